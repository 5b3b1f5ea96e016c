fn main() -> Result<(), lambda_http::Error> {
    shared::app::runtime::block_on(async {
        shared::core::logging::init();
        let deps = shared::app::bootstrap::init_for(web::PORTAL_SECRETS).await?;
        shared::pipeline::lambda::serve(deps, |deps, request| async move { web::portal_handler(&deps, request).await })
            .await
    })
}
