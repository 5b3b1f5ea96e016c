fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(web::NOT_FOUND_SECRETS, |deps, request| async move {
        web::not_found_handler(&deps, request).await
    })
}
