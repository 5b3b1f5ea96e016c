//! The Fernet spec's own vectors (github.com/fernet/spec): generate, verify and all 8 invalid ones.
#![allow(clippy::expect_used, clippy::panic, reason = "test helpers fail the test by panicking")]

use std::time::Duration;

use serde::Deserialize;
use shared::core::clock::UnixMillis;
use shared::crypto::CryptoError;
use shared::crypto::fernet::FernetKey;

#[derive(Deserialize)]
struct Vector {
    token: String,
    now: String,
    secret: String,
    #[serde(default)]
    src: String,
    #[serde(default)]
    iv: Vec<u8>,
    #[serde(default)]
    ttl_sec: Option<u64>,
    #[serde(default)]
    desc: String,
}

fn load(name: &str) -> Vec<Vector> {
    let path = format!("{}/tests/vectors/fernet/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vector file")).expect("vector json")
}

/// `1985-10-26T01:20:01-07:00` → epoch seconds (the vectors' only timestamp shape).
fn epoch(text: &str) -> u64 {
    let (date, rest) = text.split_once('T').expect("T");
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().expect("date"));
    let (y, m, d) = (ymd.next().expect("y"), ymd.next().expect("m"), ymd.next().expect("d"));
    let (time, offset) = rest.split_at(8);
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().expect("time")).collect();
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let off: Vec<i64> = offset[1..].split(':').map(|p| p.parse().expect("offset")).collect();
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let local = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    u64::try_from(local - sign * (off[0] * 3600 + off[1] * 60)).expect("after 1970")
}

#[test]
fn generate_is_byte_exact() {
    let vectors = load("generate.json");
    assert_eq!(vectors.len(), 1);
    for vector in vectors {
        let key = FernetKey::from_base64(&vector.secret).expect("key");
        let iv: [u8; 16] = vector.iv.as_slice().try_into().expect("16-byte iv");
        let token = key.encrypt_with_iv(vector.src.as_bytes(), at(epoch(&vector.now)), &iv).expect("encrypt");
        assert_eq!(token, vector.token);
    }
}

#[test]
fn verify_decrypts_to_hello() {
    let vectors = load("verify.json");
    assert_eq!(vectors.len(), 1);
    for vector in vectors {
        let key = FernetKey::from_base64(&vector.secret).expect("key");
        let plain =
            key.decrypt(&vector.token, vector.ttl_sec.map(Duration::from_secs), at(epoch(&vector.now))).expect("valid");
        assert_eq!(plain.as_slice(), vector.src.as_bytes());
        assert_eq!(plain.as_slice(), b"hello");
    }
}

#[test]
fn all_eight_invalid_tokens_are_rejected() {
    let vectors = load("invalid.json");
    assert_eq!(vectors.len(), 8, "the spec has 8 invalid vectors");
    for vector in vectors {
        let key = FernetKey::from_base64(&vector.secret).expect("key");
        let result = key.decrypt(&vector.token, vector.ttl_sec.map(Duration::from_secs), at(epoch(&vector.now)));
        match vector.desc.as_str() {
            "expired TTL" => assert_eq!(result, Err(CryptoError::Expired), "{}", vector.desc),
            _ => assert_eq!(result, Err(CryptoError::InvalidToken), "{}", vector.desc),
        }
    }
}

#[test]
fn epoch_parser_matches_the_known_instant() {
    // 1985-10-26T08:20:00Z.
    assert_eq!(epoch("1985-10-26T01:20:00-07:00"), 499_162_800);
}

/// An instant `secs` after the epoch.
fn at(secs: u64) -> UnixMillis {
    UnixMillis::from_secs(secs)
}
