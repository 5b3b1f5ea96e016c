//! The local emulator keeps DynamoDB's promises that the suites rely on, beyond what moto does
//! alone (`scripts/emulator.py`): a `TransactWriteItems` repeated with the same
//! `ClientRequestToken` (the SDK's retry of an attempt that timed out) is answered with the first
//! outcome, not run again; HTTP connections stay open, so the SDK reuses them as it does with
//! DynamoDB; and a transaction is all or nothing, serialised with its rivals, at a cost that does
//! not grow with its table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest};
use futures::StreamExt;
use kavach_tests::{deps, required_env, unique_name};
use shared::app::aws::AwsClients;

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

/// A TCP relay to the emulator that counts the connections it accepts.
async fn counting_relay(emulator: &str) -> (String, Arc<AtomicU32>) {
    let upstream = emulator.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (format!("http://{address}"), accepted)
}

#[tokio::test]
async fn the_sdk_keeps_one_connection_open_across_calls() {
    let (endpoint, accepted) = counting_relay(&required_env("AWS_ENDPOINT_URL")).await;
    let aws = AwsClients::for_endpoint(&endpoint).await;
    let table = deps().await.config.tables.identity.clone();
    const CALLS: u32 = 50;
    for n in 0..CALLS {
        let key = AttributeValue::S(format!("keep-alive-probe-{n}"));
        aws.dynamodb.get_item().table_name(&table).key("pk", key).send().await.expect("GetItem");
    }
    let connections = accepted.load(Ordering::SeqCst);
    assert!(
        connections <= 2,
        "{CALLS} sequential calls over one client opened {connections} connections: the emulator closes them"
    );
}

/// A table of its own, keyed on `pk` alone.
async fn scratch_table(aws: &AwsClients, stem: &str) -> String {
    kavach_tests::scratch_table(aws, stem, &["pk"]).await
}

fn key(pk: &str) -> AttributeValue {
    AttributeValue::S(pk.to_owned())
}

/// One transaction of the serialisation test: take a ticket from `counter` while fewer than
/// `limit` are gone, count it in `tally`, and record the taker as a new item.
fn take_ticket(table: &str, limit: u32, taker: &str) -> Vec<TransactWriteItem> {
    let counter = Update::builder()
        .table_name(table)
        .key("pk", key("counter"))
        .update_expression("SET taken = taken + :one")
        .condition_expression("taken < :limit")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
        .build()
        .expect("update");
    let tally = Update::builder()
        .table_name(table)
        .key("pk", key("tally"))
        .update_expression("ADD seen :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .build()
        .expect("update");
    let record = Put::builder()
        .table_name(table)
        .item("pk", key(&format!("taker#{taker}")))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .expect("put");
    // The tally and the record come after the counter and before it, so a cancelled transaction
    // has written before and after its failed condition, and both must be undone.
    vec![
        TransactWriteItem::builder().update(tally).build(),
        TransactWriteItem::builder().update(counter).build(),
        TransactWriteItem::builder().put(record).build(),
    ]
}

async fn number(aws: &AwsClients, table: &str, pk: &str, attribute: &str) -> Option<u64> {
    let item = aws.dynamodb.get_item().table_name(table).key("pk", key(pk)).consistent_read(true).send().await;
    item.expect("GetItem").item?.get(attribute)?.as_n().ok()?.parse().ok()
}

#[tokio::test]
async fn transactions_are_all_or_nothing_and_serialised() {
    let aws = AwsClients::from_env().await;
    let table = scratch_table(&aws, "emulator-tickets").await;
    let (limit, rivals) = (6u32, 16u32);
    aws.dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", key("counter"))
        .item("taken", AttributeValue::N("0".into()))
        .send()
        .await
        .expect("PutItem");
    // A transaction whose condition fails changes nothing, though its other items would apply.
    aws.dynamodb
        .update_item()
        .table_name(&table)
        .key("pk", key("counter"))
        .update_expression("SET taken = :limit")
        .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
        .send()
        .await
        .expect("UpdateItem");
    let refused =
        aws.dynamodb.transact_write_items().set_transact_items(Some(take_ticket(&table, limit, "late"))).send().await;
    assert!(refused.is_err(), "the counter is exhausted: the transaction is cancelled");
    assert_eq!(number(&aws, &table, "tally", "seen").await, None, "the cancelled transaction's first write is undone");
    let record = aws.dynamodb.get_item().table_name(&table).key("pk", key("taker#late")).send().await.expect("GetItem");
    assert!(record.item.is_none(), "and its write after the failed condition is undone too");
    let items = aws.dynamodb.scan().table_name(&table).send().await.expect("Scan").count;
    assert_eq!(items, 1, "the table holds the counter alone");

    // Rivals on the same items: exactly `limit` win, and every count agrees.
    aws.dynamodb
        .update_item()
        .table_name(&table)
        .key("pk", key("counter"))
        .update_expression("SET taken = :zero")
        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
        .send()
        .await
        .expect("UpdateItem");
    let outcomes = futures::stream::iter(0..rivals)
        .map(|n| {
            let (aws, table) = (&aws, &table);
            async move {
                aws.dynamodb
                    .transact_write_items()
                    .set_transact_items(Some(take_ticket(table, limit, &n.to_string())))
                    .send()
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(rivals as usize)
        .collect::<Vec<bool>>()
        .await;
    let won = outcomes.iter().filter(|won| **won).count() as u64;
    assert_eq!(won, u64::from(limit), "as many transactions commit as there were tickets");
    assert_eq!(number(&aws, &table, "counter", "taken").await, Some(won));
    assert_eq!(number(&aws, &table, "tally", "seen").await, Some(won), "the losers' tally writes are undone");
    let items = aws.dynamodb.scan().table_name(&table).send().await.expect("Scan").count;
    assert_eq!(items as u64, 2 + won, "the counter, the tally and one record per winner");
}

/// `count` items in partitions of their own, with a payload, in batches of 25.
async fn load_unrelated(aws: &AwsClients, table: &str, count: usize) {
    let batches: Vec<Vec<WriteRequest>> = (0..count)
        .map(|n| {
            let item = [
                ("pk".to_owned(), key(&format!("unrelated#{n}"))),
                ("payload".to_owned(), AttributeValue::S("x".repeat(64))),
                ("n".to_owned(), AttributeValue::N(n.to_string())),
            ];
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item.into())).build().expect("put"))
                .build()
        })
        .collect::<Vec<_>>()
        .chunks(25)
        .map(<[WriteRequest]>::to_vec)
        .collect();
    for batch in batches {
        let mut pending = batch;
        while !pending.is_empty() {
            let output =
                aws.dynamodb.batch_write_item().request_items(table, pending).send().await.expect("BatchWriteItem");
            pending = output.unprocessed_items.and_then(|mut items| items.remove(table)).unwrap_or_default();
        }
    }
}

/// Items an operation never touches, in partitions of their own.
const UNRELATED: usize = 4000;

/// The median time of 15 runs of `probe` on a table as it is, then beside [`UNRELATED`] items
/// loaded into it: how the operation's cost grows with the table.
async fn before_and_beside_unrelated<F, Fut>(aws: &AwsClients, table: &str, probe: F) -> (Duration, Duration)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let median = || async {
        let mut times = Vec::new();
        for _ in 0..15 {
            let started = Instant::now();
            probe().await;
            times.push(started.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    };
    let small = median().await;
    load_unrelated(aws, table, UNRELATED).await;
    (small, median().await)
}

#[tokio::test]
async fn a_query_reads_its_partition_not_the_whole_table() {
    let aws = AwsClients::from_env().await;
    let table = scratch_table(&aws, "emulator-query").await;
    aws.dynamodb.put_item().table_name(&table).item("pk", key("probe#query")).send().await.expect("PutItem");
    // moto read and sorted every item of the table for each Query.
    let (small, large) = before_and_beside_unrelated(&aws, &table, || async {
        let output = aws
            .dynamodb
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", key("probe#query"))
            .consistent_read(true)
            .send()
            .await
            .expect("Query");
        assert_eq!(output.count(), 1, "the partition's one item");
    })
    .await;
    // Reading the whole table made it 4.5 to 7.4 times; its partition alone, about the same.
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    assert!(
        ratio < 3.0,
        "a Query took {small:?} in a near-empty table and {large:?} beside {UNRELATED} unrelated items ({ratio:.1}×)"
    );
}

#[tokio::test]
async fn a_transaction_does_not_copy_its_whole_table() {
    let aws = AwsClients::from_env().await;
    let table = scratch_table(&aws, "emulator-big").await;
    // Items the transactions never touch: moto copied all of them for every transaction.
    let (small, large) = before_and_beside_unrelated(&aws, &table, || async {
        let put = Put::builder().table_name(&table).item("pk", key(&unique_name("probe"))).build().expect("put");
        aws.dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await
            .expect("TransactWriteItems");
    })
    .await;
    // A ratio of medians on the same machine, loosely: copying the table made it about 20 times.
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    assert!(
        ratio < 4.0,
        "a transaction took {small:?} in a near-empty table and {large:?} beside {UNRELATED} unrelated items ({ratio:.1}×)"
    );
}
