fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(ping::SECRETS, |deps, request| async move { ping::handler(&deps, request).await })
}
