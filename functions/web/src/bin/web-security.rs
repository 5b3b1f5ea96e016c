fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(web::SECURITY_SECRETS, |deps, request| async move {
        web::security_handler(&deps, request).await
    })
}
