fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(web::SETUP_SECRETS, |deps, request| async move {
        web::setup_handler(&deps, request).await
    })
}
