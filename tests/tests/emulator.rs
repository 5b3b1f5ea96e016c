//! The local emulator keeps DynamoDB's promises that the suites rely on, beyond what moto does
//! alone (`scripts/emulator.py`): a `TransactWriteItems` repeated with the same
//! `ClientRequestToken` (the SDK's retry of an attempt that timed out) is answered with the first
//! outcome, not run again.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use kavach_tests::{deps, unique_name};

fn create_once(table: &str, pk: &str) -> TransactWriteItem {
    let put = Put::builder()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.to_owned()))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .expect("put");
    TransactWriteItem::builder().put(put).build()
}

#[tokio::test]
async fn a_transaction_repeated_with_its_client_request_token_is_not_run_again() {
    let deps = deps().await;
    let table = &deps.config.tables.identity;
    let pk = unique_name("emulator-idempotency");
    let token = unique_name("token");
    let send = |token: String| {
        deps.aws
            .dynamodb
            .transact_write_items()
            .transact_items(create_once(table, &pk))
            .client_request_token(token)
            .send()
    };
    send(token.clone()).await.expect("the first attempt commits");
    send(token).await.expect("a repeat with the same token gets the first outcome, as in DynamoDB");
    let different = send(unique_name("token")).await;
    assert!(different.is_err(), "a new transaction still meets its condition");
}
