fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(orders::SECRETS, |deps, request| async move { orders::handler(&deps, request).await })
}
