//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, as every authenticator app expects) with the two
//! things pyotp lacks: only the current and the previous step are accepted, and the caller learns
//! *which* step matched so that it can claim it with a conditional write (the replay guard).

use secrecy::{ExposeSecret, SecretBox};
use totp_rs::{Algorithm, TOTP};

use crate::core::clock::UnixMillis;
use crate::crypto::ct_eq;

pub const STEP_SECS: u64 = 30;
pub const DIGITS: usize = 6;
/// Shown in authenticator apps above the account name.
pub const ISSUER: &str = "Kavach";

/// A TOTP shared secret: 160 random bits, as RFC 4226 recommends. Never printed by `Debug`.
pub struct TotpSecret(SecretBox<[u8; 20]>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        Self(SecretBox::new(Box::new(crate::crypto::random_bytes::<20>())))
    }

    /// From its raw bytes (as decrypted from storage); `None` unless exactly 20 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 20] = bytes.try_into().ok()?;
        Some(Self(SecretBox::new(Box::new(bytes))))
    }

    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Base32 without padding: what a user types into an authenticator app by hand.
    pub fn base32(&self) -> String {
        self.totp().get_secret_base32()
    }

    /// The secret is always 20 bytes and the code 6 digits, which is all `TOTP::new` would check.
    /// totp-rs's `zeroize` feature wipes this copy of the secret when it is dropped.
    fn totp(&self) -> TOTP {
        TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 0, STEP_SECS, self.expose_bytes().to_vec())
    }

    /// The code for the step containing `at` (tests and the browser tests' "phone").
    pub fn code_at(&self, at: UnixMillis) -> String {
        self.totp().generate(at.secs())
    }

    /// The step `code` is valid for, if it is the current or the previous one.
    pub fn matching_step(&self, code: &str, now: UnixMillis) -> Option<u64> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp();
        let current = now.secs() / STEP_SECS;
        // Both candidates are computed and compared, so timing does not say which one matched.
        let matches: Vec<u64> = [current, current.saturating_sub(1)]
            .into_iter()
            .filter(|step| ct_eq(totp.generate(step * STEP_SECS).as_bytes(), code.as_bytes()))
            .collect();
        matches.first().copied()
    }

    /// The `otpauth://` URI authenticator apps scan.
    pub fn provisioning_uri(&self, account: &str) -> String {
        let label = format!("{ISSUER}:{account}");
        format!(
            "otpauth://totp/{}?secret={}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            form_urlencoded::byte_serialize(label.as_bytes()).collect::<String>().replace('+', "%20"),
            self.base32()
        )
    }

    /// The provisioning URI as an inline SVG QR code: no image request, nothing for the CSP to allow.
    pub fn qr_svg(&self, account: &str) -> Option<String> {
        let code = qrcode::QrCode::new(self.provisioning_uri(account).as_bytes()).ok()?;
        Some(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn rfc6238_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").expect("20 bytes");
        for (time, code) in
            [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(secret.code_at(UnixMillis::from_secs(time)), code, "t={time}");
        }
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn accepts_current_and_previous_step_only() {
        let secret = TotpSecret::generate();
        let now = UnixMillis::from_secs(1_800_000_015);
        let step = now.secs() / STEP_SECS;
        let current = secret.code_at(now);
        let previous = secret.code_at(UnixMillis::from_secs((step - 1) * STEP_SECS));
        let older = secret.code_at(UnixMillis::from_secs((step - 2) * STEP_SECS));
        let next = secret.code_at(UnixMillis::from_secs((step + 1) * STEP_SECS));
        assert_eq!(secret.matching_step(&current, now), Some(step));
        assert_eq!(secret.matching_step(&previous, now), Some(step - 1));
        // A collision with an older code is possible in principle (1 in 10^6); these are distinct here.
        if older != current && older != previous {
            assert_eq!(secret.matching_step(&older, now), None);
        }
        if next != current && next != previous {
            assert_eq!(secret.matching_step(&next, now), None);
        }
        for junk in ["", "12345", "1234567", "abcdef", " 12 34"] {
            assert_eq!(secret.matching_step(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn provisioning_uri_and_qr() {
        let secret = TotpSecret::from_bytes(&[0u8; 20]).expect("20 bytes");
        let uri = secret.provisioning_uri("admin@example.com");
        assert!(uri.starts_with("otpauth://totp/Kavach%3Aadmin%40example.com?secret=AAAA"), "{uri}");
        assert!(secret.qr_svg("admin").is_some_and(|svg| svg.contains("<svg")));
        assert_eq!(format!("{secret:?}"), "TotpSecret(..)");
    }
}
