fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(web::PORTAL_SECRETS, |deps, request| async move {
        web::portal_handler(&deps, request).await
    })
}
