//! The detectors and their settings: what each counts, its evidence, its ban's terms, and the
//! thresholds the dashboard edits (OpenAlgo's names, ranges and messages).

use std::collections::HashMap;

use crate::core::error::AppError;
use crate::threats::manual::{DURATION_MESSAGE, MAX_BAN_HOURS};

/// Every detector counts over the last this many hours.
pub const WINDOW_HOURS: u64 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    NotFound,
    InvalidApiKey,
    LoginAbuse,
}

impl Detector {
    pub const ALL: [Detector; 3] = [Detector::NotFound, Detector::InvalidApiKey, Detector::LoginAbuse];

    /// The part of the tracker's key that names the detector.
    pub fn key(self) -> &'static str {
        match self {
            Detector::NotFound => "404",
            Detector::InvalidApiKey => "api_key",
            Detector::LoginAbuse => "login",
        }
    }

    /// The ban's `created_by`.
    pub fn creator(self) -> &'static str {
        match self {
            Detector::NotFound => "404_detector",
            Detector::InvalidApiKey => "api_key_detector",
            Detector::LoginAbuse => "login_detector",
        }
    }

    pub fn reason(self, count: u64) -> String {
        match self {
            Detector::NotFound => format!("Exceeded 404 threshold: {count} errors in 24 hours"),
            Detector::InvalidApiKey => format!("Exceeded invalid API key threshold: {count} attempts in 24 hours"),
            Detector::LoginAbuse => format!("Exceeded login rate limit: {count} refused attempts in 24 hours"),
        }
    }

    /// How many distinct pieces of evidence a tracker keeps (OpenAlgo's: 50 paths, 20 key hashes).
    pub fn evidence_cap(self) -> usize {
        match self {
            Detector::NotFound => 50,
            Detector::InvalidApiKey => 20,
            Detector::LoginAbuse => 0,
        }
    }
}

/// The detectors' settings. Ranges and messages are OpenAlgo's; the defaults are stricter (auto-ban
/// on, 20 404s and 10 bad keys a day instead of 100) because a trader's API has no business
/// answering scanners, and the third ban is permanent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecuritySettings {
    pub auto_ban_enabled: bool,
    pub not_found_threshold: u32,
    /// Hours; 0 is permanent.
    pub not_found_ban_hours: u32,
    pub api_key_threshold: u32,
    pub api_key_ban_hours: u32,
    pub login_threshold: u32,
    pub login_ban_hours: u32,
    /// The offence from which every ban is permanent.
    pub repeat_offender_limit: u32,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            auto_ban_enabled: true,
            not_found_threshold: 20,
            not_found_ban_hours: 24,
            api_key_threshold: 10,
            api_key_ban_hours: 24,
            login_threshold: 10,
            login_ban_hours: 24,
            repeat_offender_limit: 3,
        }
    }
}

/// Form and storage names, with their ranges and OpenAlgo's messages.
const THRESHOLDS: [(&str, u32, u32, &str); 4] = [
    ("404_threshold", 1, 1000, "404 threshold must be between 1 and 1000"),
    ("api_threshold", 1, 100, "Invalid API key threshold must be between 1 and 100"),
    ("login_threshold", 1, 1000, "Login threshold must be between 1 and 1000"),
    ("repeat_offender_limit", 1, 10, "Repeat offender limit must be between 1 and 10"),
];
const DURATIONS: [&str; 3] = ["404_ban_duration", "api_ban_duration", "login_ban_duration"];

impl SecuritySettings {
    pub fn threshold(&self, detector: Detector) -> u32 {
        match detector {
            Detector::NotFound => self.not_found_threshold,
            Detector::InvalidApiKey => self.api_key_threshold,
            Detector::LoginAbuse => self.login_threshold,
        }
    }

    /// `None` is permanent.
    pub fn ban_hours(&self, detector: Detector) -> Option<u32> {
        let hours = match detector {
            Detector::NotFound => self.not_found_ban_hours,
            Detector::InvalidApiKey => self.api_key_ban_hours,
            Detector::LoginAbuse => self.login_ban_hours,
        };
        (hours > 0).then_some(hours)
    }

    /// The settings as named numbers (the form's names; `auto_ban_enabled` is 0 or 1).
    pub fn to_stored(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("auto_ban_enabled", u64::from(self.auto_ban_enabled)),
            ("404_threshold", u64::from(self.not_found_threshold)),
            ("404_ban_duration", u64::from(self.not_found_ban_hours)),
            ("api_threshold", u64::from(self.api_key_threshold)),
            ("api_ban_duration", u64::from(self.api_key_ban_hours)),
            ("login_threshold", u64::from(self.login_threshold)),
            ("login_ban_duration", u64::from(self.login_ban_hours)),
            ("repeat_offender_limit", u64::from(self.repeat_offender_limit)),
        ]
    }

    /// Reads stored settings; a missing or out-of-range value (an older or hand-edited item) falls
    /// back to its default, so a bad item can never switch detection off by accident.
    pub fn from_stored(stored: &HashMap<String, u64>) -> Self {
        let mut settings = Self::default();
        for (name, value) in stored {
            let one = HashMap::from([(name.clone(), value.to_string())]);
            match settings.updated_from(&one) {
                Ok(updated) => settings = updated,
                Err(_) => tracing::warn!(setting = %name, value, "stored security setting out of range; default kept"),
            }
        }
        settings
    }

    /// These settings with the fields present in `form` replaced, each validated with OpenAlgo's
    /// ranges and messages. Absent fields keep their value.
    pub fn updated_from(&self, form: &HashMap<String, String>) -> Result<Self, AppError> {
        let mut next = *self;
        if let Some(flag) = form.get("auto_ban_enabled") {
            next.auto_ban_enabled = match flag.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => true,
                "false" | "0" | "off" | "no" | "" => false,
                _ => return Err(AppError::bad_request("auto_ban_enabled must be true or false")),
            };
        }
        let number = |name: &str| -> Result<Option<u32>, AppError> {
            match form.get(name) {
                None => Ok(None),
                Some(text) => text
                    .trim()
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| AppError::bad_request("Invalid numeric value provided")),
            }
        };
        for (name, low, high, message) in THRESHOLDS {
            if let Some(value) = number(name)? {
                if !(low..=high).contains(&value) {
                    return Err(AppError::bad_request(message));
                }
                match name {
                    "404_threshold" => next.not_found_threshold = value,
                    "api_threshold" => next.api_key_threshold = value,
                    "login_threshold" => next.login_threshold = value,
                    _ => next.repeat_offender_limit = value,
                }
            }
        }
        for name in DURATIONS {
            if let Some(hours) = number(name)? {
                if hours > MAX_BAN_HOURS {
                    return Err(AppError::bad_request(DURATION_MESSAGE));
                }
                match name {
                    "404_ban_duration" => next.not_found_ban_hours = hours,
                    "api_ban_duration" => next.api_key_ban_hours = hours,
                    _ => next.login_ban_hours = hours,
                }
            }
        }
        Ok(next)
    }
}

/// Paths a browser, crawler or OS asks for by itself: their 404s say nothing about the visitor.
pub fn is_well_known(path: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "/favicon",
        "/robots.txt",
        "/sitemap",
        "/manifest",
        "/sw.js",
        "/.well-known/",
        "/apple-touch-icon",
        "/service-worker",
        "/browserconfig.xml",
    ];
    PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// The first 12 hex digits of SHA-256 of a presented key: enough to tell attempts apart on the
/// dashboard, far too little to recover or use a key.
pub fn short_key_hash(presented: &str) -> String {
    let mut hash = crate::crypto::sha256_hex(presented.as_bytes());
    hash.truncate(12);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn settings_are_validated_with_openalgo_ranges_and_messages() {
        let defaults = SecuritySettings::default();
        let refuse =
            |pairs: &[(&str, &str)]| defaults.updated_from(&form(pairs)).expect_err("refused").public_message();
        assert_eq!(refuse(&[("404_threshold", "0")]), "404 threshold must be between 1 and 1000");
        assert_eq!(refuse(&[("404_threshold", "1001")]), "404 threshold must be between 1 and 1000");
        assert_eq!(refuse(&[("api_threshold", "101")]), "Invalid API key threshold must be between 1 and 100");
        assert_eq!(refuse(&[("repeat_offender_limit", "11")]), "Repeat offender limit must be between 1 and 10");
        assert_eq!(refuse(&[("api_ban_duration", "8761")]), DURATION_MESSAGE);
        assert_eq!(refuse(&[("404_threshold", "twenty")]), "Invalid numeric value provided");

        let updated = defaults
            .updated_from(&form(&[("404_threshold", "5"), ("api_ban_duration", "0"), ("auto_ban_enabled", "false")]))
            .expect("valid");
        assert_eq!(updated.not_found_threshold, 5);
        assert_eq!(updated.ban_hours(Detector::InvalidApiKey), None, "0 is permanent");
        assert!(!updated.auto_ban_enabled);
        assert_eq!(updated.api_key_threshold, defaults.api_key_threshold, "absent fields keep their value");
    }

    #[test]
    fn stored_settings_round_trip_and_bad_values_fall_back_to_defaults() {
        let custom =
            SecuritySettings { not_found_threshold: 7, auto_ban_enabled: false, ..SecuritySettings::default() };
        let stored: HashMap<String, u64> =
            custom.to_stored().into_iter().map(|(name, value)| (name.to_owned(), value)).collect();
        assert_eq!(SecuritySettings::from_stored(&stored), custom);
        let broken: HashMap<String, u64> = [("404_threshold".to_owned(), 0)].into_iter().collect();
        assert_eq!(SecuritySettings::from_stored(&broken), SecuritySettings::default());
    }

    #[test]
    fn defaults_are_on_and_the_third_offence_is_permanent() {
        let defaults = SecuritySettings::default();
        assert!(defaults.auto_ban_enabled);
        assert_eq!(defaults.threshold(Detector::InvalidApiKey), 10);
        assert_eq!(defaults.threshold(Detector::NotFound), 20);
        assert_eq!(defaults.repeat_offender_limit, 3);
        assert_eq!(defaults.ban_hours(Detector::NotFound), Some(24));
    }

    #[test]
    fn well_known_paths_and_short_key_hashes() {
        assert!(is_well_known("/favicon.ico") && is_well_known("/robots.txt"));
        assert!(is_well_known("/.well-known/security.txt"));
        assert!(!is_well_known("/wp-admin") && !is_well_known("/.env") && !is_well_known("/.well-known"));
        assert_eq!(short_key_hash("abc").len(), 12);
        assert_ne!(short_key_hash("abc"), short_key_hash("abd"));
    }
}
