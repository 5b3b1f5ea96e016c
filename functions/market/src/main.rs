fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(market::SECRETS, |deps, request| async move { market::handler(&deps, request).await })
}
