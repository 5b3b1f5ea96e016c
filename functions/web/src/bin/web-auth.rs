fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(
        web::AUTH_SECRETS,
        |deps, request| async move { web::auth_handler(&deps, request).await },
    )
}
