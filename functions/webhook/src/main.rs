fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(
        webhook::SECRETS,
        |deps, request| async move { webhook::handler(&deps, request).await },
    )
}
