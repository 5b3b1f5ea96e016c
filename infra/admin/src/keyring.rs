//! Key-ring maintenance: re-encrypting stored ciphertext under the newest root, and retiring an
//! old root once nothing is left under it.
//!
//! The walk is one paginated `Scan` of the identity table, where every ciphertext lives: API-key
//! copies (`apikey#…` `copy`), TOTP secrets (`user#…` `totp`), the SMTP password
//! (`settings#smtp` `password`) and broker links (`broker#<user>#<broker>` `creds` and `tok`, under
//! that broker's own purpose). Each ciphertext is rewritten with a write conditioned on the value
//! it read, so the walk is idempotent value by value: killed at any point, it is simply run again,
//! and what is already under the newest root is skipped; a value changed meanwhile is left to the
//! writer, which used the newest root.

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use shared::app::aws::AwsClients;
use shared::core::clock::{Clock, SystemClock};
use shared::core::config::Config;
use shared::crypto::keyring::{KeyRing, Purpose, PurposeCipher};
use shared::store::app_secret;

/// A secret without a ring: deploys create it (the `KeyRing` custom resource); this command can too.
pub const NO_RING: &str = "no key ring yet: the stack's KeyRing custom resource creates it at deploy (see the stack \
     events if it failed); `kavach keyring init` creates it now";

/// Where a ciphertext is: which attribute of which items, under which purpose.
struct Field {
    attribute: &'static str,
    purpose: Purpose,
}

/// The ciphertexts an identity item carries, by its key.
fn fields_of(pk: &str) -> Vec<Field> {
    if pk.starts_with("apikey#") {
        vec![Field { attribute: "copy", purpose: Purpose::ApiKeyCopy }]
    } else if pk.starts_with("user#") {
        vec![Field { attribute: "totp", purpose: Purpose::TotpSecret }]
    } else if pk == "settings#smtp" {
        vec![Field { attribute: "password", purpose: Purpose::SmtpPassword }]
    } else if let Some(broker) = pk.strip_prefix("broker#").and_then(|rest| rest.rsplit_once('#')).map(|(_, b)| b) {
        let purpose = Purpose::BrokerTokens(broker.to_owned());
        vec![Field { attribute: "creds", purpose: purpose.clone() }, Field { attribute: "tok", purpose }]
    } else {
        Vec::new()
    }
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walked {
    /// Ciphertexts per root id (before any re-encryption).
    pub by_root: std::collections::BTreeMap<u32, u64>,
    pub reencrypted: u64,
    /// Ciphertexts no root of the ring opens.
    pub unreadable: u64,
    /// The walk stopped at the `--limit` with items left.
    pub stopped_early: bool,
}

enum Mode {
    /// Rewrite what is not under the newest root, at most `limit` items when given.
    Reencrypt { limit: Option<u64> },
    /// Only count.
    Count,
}

struct Ring {
    ring: KeyRing,
    sealed: String,
}

async fn current_ring(config: &Config, aws: &AwsClients) -> anyhow::Result<Ring> {
    let secret = app_secret::load(&aws.secrets, &config.secret_id).await?;
    let sealed = secret.sealed_ring.context(NO_RING)?;
    let ring = app_secret::open_ring(&aws.kms, config, &sealed).await?;
    Ok(Ring { ring, sealed })
}

async fn walk(config: &Config, aws: &AwsClients, ring: &KeyRing, mode: Mode) -> anyhow::Result<Walked> {
    // Each purpose's keys, derived the first time an item needs them.
    let mut ciphers: Vec<(Purpose, PurposeCipher)> = Vec::new();
    let table = &config.tables.identity;
    let mut pages = aws
        .dynamodb
        .scan()
        .table_name(table)
        .filter_expression(
            "attribute_exists(#copy) OR attribute_exists(#totp) OR attribute_exists(#password) OR \
             attribute_exists(#creds)",
        )
        .expression_attribute_names("#copy", "copy")
        .expression_attribute_names("#totp", "totp")
        .expression_attribute_names("#password", "password")
        .expression_attribute_names("#creds", "creds")
        .consistent_read(true)
        .into_paginator()
        .items()
        .send();
    let mut walked = Walked::default();
    let now = SystemClock.now();
    'items: while let Some(item) = pages.next().await {
        let item = item.context("scan the identity table")?;
        let Some(pk) = item.get("pk").and_then(|value| value.as_s().ok()) else { continue };
        for field in fields_of(pk) {
            let Some(token) = item.get(field.attribute).and_then(|value| value.as_s().ok()) else { continue };
            let cipher = match ciphers.iter().position(|(purpose, _)| *purpose == field.purpose) {
                Some(at) => &ciphers[at].1,
                None => {
                    ciphers.push((field.purpose.clone(), ring.cipher(&field.purpose)?));
                    &ciphers[ciphers.len() - 1].1
                }
            };
            let (root, plaintext) = match cipher.decrypt_identified(token, None, now) {
                Ok(opened) => opened,
                Err(_) => {
                    walked.unreadable += 1;
                    eprintln!("warning: {pk} {}: no root of the ring opens it", field.attribute);
                    continue;
                }
            };
            *walked.by_root.entry(root).or_default() += 1;
            let Mode::Reencrypt { limit } = mode else { continue };
            if Some(root) == cipher.newest_id() {
                continue;
            }
            if limit.is_some_and(|limit| walked.reencrypted >= limit) {
                walked.stopped_early = true;
                break 'items;
            }
            let fresh = cipher.encrypt(&plaintext, now)?;
            let written = aws
                .dynamodb
                .update_item()
                .table_name(table)
                .key("pk", AttributeValue::S(pk.to_owned()))
                .update_expression("SET #field = :new")
                // Only over the value read: a concurrent write (always under the newest root) wins.
                .condition_expression("#field = :old")
                .expression_attribute_names("#field", field.attribute)
                .expression_attribute_values(":new", AttributeValue::S(fresh))
                .expression_attribute_values(":old", AttributeValue::S(token.to_owned()))
                .send()
                .await;
            match written {
                Ok(_) => walked.reencrypted += 1,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|service| service.is_conditional_check_failed_exception()) => {}
                Err(error) => {
                    return Err(anyhow::Error::new(error).context(format!("re-encrypt {pk} {}", field.attribute)));
                }
            }
        }
    }
    Ok(walked)
}

/// `kavach keyring reencrypt [--limit N]`.
pub async fn reencrypt(options: &[&str]) -> anyhow::Result<()> {
    let limit = match options {
        [] => None,
        ["--limit", n] => Some(n.parse::<u64>().with_context(|| format!("--limit `{n}` is not a whole number"))?),
        _ => bail!("usage: kavach keyring reencrypt [--limit N]"),
    };
    let config = Config::from_env()?;
    let aws = AwsClients::from_env().await;
    let Ring { ring, .. } = current_ring(&config, &aws).await?;
    let walked = walk(&config, &aws, &ring, Mode::Reencrypt { limit }).await?;
    println!(
        "Re-encrypted {} value(s) under root {:?}; found per root before: {:?}; unreadable: {}.",
        walked.reencrypted,
        ring.newest_id(),
        walked.by_root,
        walked.unreadable
    );
    if walked.stopped_early {
        println!("Stopped at the limit with items left: run it again to go on.");
    }
    Ok(())
}

/// `kavach keyring retire <id>`: refused while any ciphertext is still under root `id`.
pub async fn retire(id: &str) -> anyhow::Result<()> {
    let id: u32 = id.parse().with_context(|| format!("root id `{id}` is not a whole number"))?;
    let config = Config::from_env()?;
    let aws = AwsClients::from_env().await;
    let Ring { ring, sealed } = current_ring(&config, &aws).await?;
    let ids = ring.ids();
    // Checked before the walk: retiring the newest or an unknown root is refused outright.
    let remaining = KeyRing::from_plaintext(&ring.to_plaintext())?.without(id)?;
    let walked = walk(&config, &aws, &ring, Mode::Count).await?;
    let left = walked.by_root.get(&id).copied().unwrap_or(0);
    if left > 0 {
        bail!(
            "{left} value(s) are still encrypted under root {id}: run `kavach keyring reencrypt` first; root {id} stays"
        );
    }
    // The ring must not have changed since it was read (another rotate or retire).
    let secret = app_secret::load(&aws.secrets, &config.secret_id).await?;
    if secret.sealed_ring.as_deref() != Some(sealed.as_str()) {
        bail!("the key ring changed while checking: run the command again");
    }
    let resealed = app_secret::seal_ring(&aws.kms, &config, &remaining).await?;
    app_secret::store_ring(&aws.secrets, &config.secret_id, &resealed).await?;
    println!("Retired root {id}: the ring held {ids:?}, now {:?}.", remaining.ids());
    Ok(())
}

/// `kavach keyring status`: the roots, and how many ciphertexts each holds.
pub async fn status() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let aws = AwsClients::from_env().await;
    let Ring { ring, .. } = current_ring(&config, &aws).await?;
    let walked = walk(&config, &aws, &ring, Mode::Count).await?;
    println!(
        "Roots (newest first): {:?}; items per root: {:?}; unreadable: {}.",
        ring.ids(),
        walked.by_root,
        walked.unreadable
    );
    Ok(())
}
