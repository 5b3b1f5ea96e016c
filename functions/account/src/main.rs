fn main() -> Result<(), lambda_http::Error> {
    shared::pipeline::lambda::run(
        account::SECRETS,
        |deps, request| async move { account::handler(&deps, request).await },
    )
}
