//! Argon2id with the pepper as Argon2's keyed `secret` input (RFC 9106 §3.1), stored as PHC strings.
//!
//! The pepper lives in Secrets Manager, never beside the hashes, so a stolen table alone cannot be
//! attacked offline.

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretBox};

use std::sync::{Arc, Mutex, PoisonError};

use super::CryptoError;
use crate::core::error::AppError;

/// The OWASP password-storage floor for Argon2id: 19 MiB, 2 passes, 1 lane.
pub const OWASP_FLOOR: ArgonCost = ArgonCost { memory_kib: 19_456, iterations: 2, lanes: 1 };

/// Strings that mark a secret as a sample or placeholder rather than generated randomness.
const PLACEHOLDER_MARKERS: &[&str] =
    &["placeholder", "changeme", "change_me", "replace", "example", "regenerate", "xxxxxxxx"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgonCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

/// The keyed Argon2 input. At least 32 bytes, never a placeholder.
pub struct Pepper(SecretBox<Vec<u8>>);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(**redacted**)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PepperError {
    #[error("the pepper is missing")]
    Missing,
    #[error("the pepper is {0} bytes; at least 32 random bytes are required")]
    TooShort(usize),
    #[error("the pepper is a placeholder value; generate a random one")]
    Placeholder,
}

impl Pepper {
    pub fn new(bytes: Vec<u8>) -> Result<Self, PepperError> {
        if bytes.is_empty() {
            return Err(PepperError::Missing);
        }
        if bytes.len() < 32 {
            return Err(PepperError::TooShort(bytes.len()));
        }
        let lower = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
        let distinct = {
            let mut seen = bytes.clone();
            seen.sort_unstable();
            seen.dedup();
            seen.len()
        };
        // A generated 32+ byte secret has many distinct bytes; `aaaa…` or `0123…` patterns do not.
        if PLACEHOLDER_MARKERS.iter().any(|marker| lower.contains(marker)) || distinct < 8 {
            return Err(PepperError::Placeholder);
        }
        Ok(Self(SecretBox::new(Box::new(bytes))))
    }
}

/// A stored Argon2id hash (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`). Not a secret to use, but one
/// to attack offline, so `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct PhcString(String);

impl std::fmt::Debug for PhcString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhcString(..)")
    }
}

impl PhcString {
    /// A hash read back from the table.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    /// The text, for the item that stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Valid { needs_rehash: bool },
    Invalid,
}

/// What [`PasswordHasher::verify_upgrading`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Invalid,
    Valid,
    /// Valid under old parameters; this is the hash under the current ones.
    Rehashed(PhcString),
}

/// Argon2's working memory (`m` blocks of 1 KiB), kept mapped between hashes instead of being
/// allocated afresh for each one.
///
/// A fresh 19 MiB allocation is 4,864 first-touch page faults. On this machine's VM they cost about
/// 11 ms, against 16 ms for the hash itself, and Lambda's microVMs fault as dearly. So a cold start
/// maps one arena ([`ArgonMemory::prefault`]) on the blocking pool while it reads its secret and
/// its first request's items, its first key verification pays only for the hash, and a warm
/// container reuses the arena for new keys and logins. Arenas are not wiped between uses: they hold
/// only blocks derived under the pepper, which lives in the same process.
pub struct ArgonMemory {
    free: Mutex<Vec<Vec<Block>>>,
    /// Held while an arena is being mapped: a hash that starts meanwhile waits for that arena
    /// rather than faulting in one of its own.
    mapping: Mutex<()>,
    /// How many arenas stay mapped: as many as hashes run at once ([`concurrent_hashes`]), so a
    /// burst does not leave more resident than it used.
    keep: usize,
}

impl std::fmt::Debug for ArgonMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mapped = self.free.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("ArgonMemory").field("mapped", &mapped).field("keep", &self.keep).finish()
    }
}

/// How many Argon2 hashes a container runs at once: one per core. The key-verification semaphore
/// and the arenas kept mapped are both sized by it, since each hash holds one arena.
pub fn concurrent_hashes() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Default for ArgonMemory {
    fn default() -> Self {
        Self::new(concurrent_hashes())
    }
}

impl ArgonMemory {
    /// Stride of the prefault: one write maps a whole page (4 KiB on x86-64 and on Lambda's arm64).
    const BLOCKS_PER_PAGE: usize = 4096 / Block::SIZE;

    pub fn new(keep: usize) -> Self {
        Self { free: Mutex::new(Vec::new()), mapping: Mutex::new(()), keep: keep.max(1) }
    }

    /// Maps one arena for `cost` now, touching each page. Blocking: a cold start runs it on the
    /// blocking pool beside its network reads.
    pub fn prefault(&self, cost: ArgonCost) {
        let _mapping = self.mapping.lock().unwrap_or_else(PoisonError::into_inner);
        let blocks = Params::new(cost.memory_kib, cost.iterations, cost.lanes, None)
            .map_or(cost.memory_kib as usize, |params| params.block_count());
        let mut arena = vec![Block::new(); blocks];
        // Non-zero: a store of zero into freshly zeroed memory may be optimised away, mapping nothing.
        for block in arena.iter_mut().step_by(Self::BLOCKS_PER_PAGE) {
            block.as_mut()[0] = 1;
        }
        self.put_back(arena);
    }

    /// Runs `work` over an arena of at least `blocks`: a mapped one if free and large enough, else
    /// a new one (kept afterwards if fewer than `keep` are).
    fn with<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        drop(self.mapping.lock().unwrap_or_else(PoisonError::into_inner));
        let reused = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut arena = match reused {
            Some(arena) if arena.len() >= blocks => arena,
            _ => vec![Block::new(); blocks],
        };
        let result = work(&mut arena);
        self.put_back(arena);
        result
    }

    fn put_back(&self, arena: Vec<Block>) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < self.keep {
            free.push(arena);
        }
    }
}

pub struct PasswordHasher {
    /// `None` in a function that verifies no password or key: every use fails closed.
    pepper: Option<Pepper>,
    params: Params,
    memory: Arc<ArgonMemory>,
    /// A hash of a random password under the current parameters, made on first use: verifying an
    /// unknown user's attempt against it costs what a real verification costs (W15).
    decoy: std::sync::OnceLock<PhcString>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("m_kib", &self.params.m_cost())
            .field("t", &self.params.t_cost())
            .field("p", &self.params.p_cost())
            .field("pepper", &if self.pepper.is_some() { "held" } else { "withheld" })
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    pub fn new(pepper: Pepper, cost: ArgonCost) -> Result<Self, CryptoError> {
        Self::with_memory(pepper, cost, Arc::default())
    }

    /// [`PasswordHasher::new`] over `memory`, which a cold start began to map before the pepper
    /// arrived.
    pub fn with_memory(pepper: Pepper, cost: ArgonCost, memory: Arc<ArgonMemory>) -> Result<Self, CryptoError> {
        if cost.memory_kib < OWASP_FLOOR.memory_kib || cost.iterations < OWASP_FLOOR.iterations || cost.lanes < 1 {
            return Err(CryptoError::Hashing("Argon2 cost is below the OWASP floor".into()));
        }
        let params = Params::new(cost.memory_kib, cost.iterations, cost.lanes, None)
            .map_err(|error| CryptoError::Hashing(error.to_string()))?;
        Ok(Self { pepper: Some(pepper), params, memory, decoy: std::sync::OnceLock::new() })
    }

    /// A hasher without the pepper, for a function that hashes and verifies nothing: each use is
    /// [`CryptoError::Withheld`].
    pub fn withheld() -> Self {
        Self {
            pepper: None,
            params: Params::DEFAULT,
            memory: Arc::new(ArgonMemory::new(1)),
            decoy: std::sync::OnceLock::new(),
        }
    }

    /// The keyed tag of `secret` under `params` in `memory`'s arena: the one place Argon2 runs.
    fn tag(
        &self,
        (algorithm, version, params): (Algorithm, Version, Params),
        secret: &[u8],
        salt: &[u8],
        length: usize,
    ) -> Result<Output, CryptoError> {
        let pepper = self.pepper.as_ref().ok_or(CryptoError::Withheld("pepper"))?;
        let blocks = params.block_count();
        let argon2 = Argon2::new_with_secret(pepper.0.expose_secret(), algorithm, version, params).map_err(hashing)?;
        self.memory
            .with(blocks, |arena| {
                Output::init_with(length, |out| Ok(argon2.hash_password_into_with_memory(secret, salt, out, arena)?))
            })
            .map_err(hashing)
    }

    /// A fresh PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a random 16-byte salt.
    pub fn hash(&self, secret: &[u8]) -> Result<PhcString, CryptoError> {
        let salt_bytes = super::random_bytes::<16>();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(hashing)?;
        let length = self.params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let tag = self.tag((Algorithm::Argon2id, Version::V0x13, self.params.clone()), secret, &salt_bytes, length)?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(hashing)?,
            salt: Some(salt.as_salt()),
            hash: Some(tag),
        };
        Ok(PhcString(phc.to_string()))
    }

    /// Spends exactly a verification's work and always answers `Invalid`: the path for a username
    /// that does not exist, so that its timing matches a wrong password's.
    pub fn verify_decoy(&self, secret: &[u8]) -> Result<Verification, CryptoError> {
        let decoy = match self.decoy.get() {
            Some(decoy) => decoy,
            None => {
                let made = self.hash(&super::random_bytes::<32>())?;
                self.decoy.get_or_init(|| made)
            }
        };
        self.verify(secret, decoy).map(|_| Verification::Invalid)
    }

    /// Verifies `secret` against `phc`, or against the decoy when there is none, and re-hashes a
    /// secret that is valid under old parameters: the whole check of a login or an API key, in one
    /// blocking call.
    pub fn verify_upgrading(&self, secret: &[u8], phc: Option<&PhcString>) -> Result<Checked, CryptoError> {
        let verdict = match phc {
            Some(phc) => self.verify(secret, phc)?,
            None => self.verify_decoy(secret)?,
        };
        match verdict {
            Verification::Invalid => Ok(Checked::Invalid),
            Verification::Valid { needs_rehash: false } => Ok(Checked::Valid),
            Verification::Valid { needs_rehash: true } => self.hash(secret).map(Checked::Rehashed),
        }
    }

    /// Verifies against a stored PHC string using the parameters it records, and says whether it
    /// should be re-hashed because our current parameters differ.
    pub fn verify(&self, secret: &[u8], phc: &PhcString) -> Result<Verification, CryptoError> {
        let stored = PasswordHash::new(&phc.0).map_err(hashing)?;
        let stored_params = Params::try_from(&stored).map_err(hashing)?;
        let needs_rehash = stored.algorithm != argon2::ARGON2ID_IDENT
            || stored_params.m_cost() != self.params.m_cost()
            || stored_params.t_cost() != self.params.t_cost()
            || stored_params.p_cost() != self.params.p_cost();
        let algorithm = Algorithm::try_from(stored.algorithm).map_err(hashing)?;
        let version = stored.version.map(Version::try_from).transpose().map_err(hashing)?.unwrap_or_default();
        let expected = stored.hash.ok_or_else(|| CryptoError::Hashing("the stored hash has no tag".into()))?;
        let salt = stored.salt.ok_or_else(|| CryptoError::Hashing("the stored hash has no salt".into()))?;
        let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
        let salt = salt.decode_b64(&mut salt_bytes).map_err(hashing)?;
        let tag = self.tag((algorithm, version, stored_params), secret, salt, expected.len())?;
        // `Output`'s equality is constant-time.
        Ok(if tag == expected { Verification::Valid { needs_rehash } } else { Verification::Invalid })
    }
}

fn hashing(error: impl std::fmt::Display) -> CryptoError {
    CryptoError::Hashing(error.to_string())
}

/// Argon2id of `secret` on the blocking pool: it is tens of ms of CPU, which would stall every
/// request sharing the async workers.
pub async fn hash_off_thread(hasher: &Arc<PasswordHasher>, secret: &str) -> Result<PhcString, AppError> {
    off_thread(hasher, secret, |hasher, secret| hasher.hash(secret)).await
}

/// [`PasswordHasher::verify_upgrading`] (the decoy when there is no stored hash) on the blocking
/// pool, for the same reason.
pub async fn check_off_thread(
    hasher: &Arc<PasswordHasher>,
    secret: &str,
    phc: Option<&PhcString>,
) -> Result<Checked, AppError> {
    let phc = phc.cloned();
    off_thread(hasher, secret, move |hasher, secret| hasher.verify_upgrading(secret, phc.as_ref())).await
}

/// [`PasswordHasher::verify`] alone on the blocking pool: for a check that cannot store an
/// upgraded hash (API keys, whose functions may not write it), so none is computed to be dropped.
pub async fn verify_off_thread(
    hasher: &Arc<PasswordHasher>,
    secret: &str,
    phc: &PhcString,
) -> Result<Verification, AppError> {
    let phc = phc.clone();
    off_thread(hasher, secret, move |hasher, secret| hasher.verify(secret, &phc)).await
}

/// `work` on the blocking pool, with a zeroised copy of `secret`.
async fn off_thread<T: Send + 'static>(
    hasher: &Arc<PasswordHasher>,
    secret: &str,
    work: impl FnOnce(&PasswordHasher, &[u8]) -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, AppError> {
    let hasher = Arc::clone(hasher);
    let secret = zeroize::Zeroizing::new(secret.as_bytes().to_vec());
    tokio::task::spawn_blocking(move || work(&hasher, &secret))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn test_pepper() -> Pepper {
        Pepper::new((0u8..48).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect()).expect("pepper")
    }

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(test_pepper(), OWASP_FLOOR).expect("hasher")
    }

    #[test]
    fn rfc9106_known_answers_with_keyed_secret() {
        // RFC 9106 §5.1–5.3: password 32×0x01, salt 16×0x02, secret 8×0x03, AD 12×0x04,
        // m = 32 KiB, t = 3, p = 4, 32-byte tag.
        let vectors = [
            (Algorithm::Argon2d, "512b391b6f1162975371d30919734294f868e3be3984f3c1a13a4db9fabe4acb"),
            (Algorithm::Argon2i, "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8"),
            (Algorithm::Argon2id, "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"),
        ];
        for (algorithm, expected) in vectors {
            let params = argon2::ParamsBuilder::new()
                .m_cost(32)
                .t_cost(3)
                .p_cost(4)
                .output_len(32)
                .data(argon2::AssociatedData::new(&[4u8; 12]).expect("ad"))
                .build()
                .expect("params");
            let argon = Argon2::new_with_secret(&[3u8; 8], algorithm, Version::V0x13, params).expect("argon2");
            let mut tag = [0u8; 32];
            argon.hash_password_into(&[1u8; 32], &[2u8; 16], &mut tag).expect("hash");
            assert_eq!(hex::encode(tag), expected, "{algorithm:?}");
        }
    }

    #[test]
    fn phc_round_trip_and_wrong_secret() {
        let hasher = hasher();
        let phc = hasher.hash(b"correct horse").expect("hash");
        assert!(phc.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", phc.as_str());
        assert!(matches!(hasher.verify(b"correct horse", &phc), Ok(Verification::Valid { needs_rehash: false })));
        assert!(matches!(hasher.verify(b"correct horsf", &phc), Ok(Verification::Invalid)));
        let long = vec![b'p'; 128];
        let long_phc = hasher.hash(&long).expect("hash");
        assert!(matches!(hasher.verify(&long[..127], &long_phc), Ok(Verification::Invalid)), "no truncation");
    }

    #[test]
    fn tags_match_the_crates_own_phc_hashing_and_verifying() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let ours = hasher();
        let pepper = test_pepper();
        let theirs =
            Argon2::new_with_secret(pepper.0.expose_secret(), Algorithm::Argon2id, Version::V0x13, ours.params.clone())
                .expect("argon2");
        let phc = ours.hash(b"correct horse").expect("hash");
        let parsed = PasswordHash::new(phc.as_str()).expect("phc");
        assert!(theirs.verify_password(b"correct horse", &parsed).is_ok(), "the crate verifies our hash");
        assert!(theirs.verify_password(b"correct horsf", &parsed).is_err());
        let salt = SaltString::encode_b64(&[9u8; 16]).expect("salt");
        let their_phc = PhcString::from_stored(theirs.hash_password(b"pw", &salt).expect("hash").to_string());
        assert!(matches!(ours.verify(b"pw", &their_phc), Ok(Verification::Valid { needs_rehash: false })));
        assert!(matches!(ours.verify(b"pv", &their_phc), Ok(Verification::Invalid)));
        // Argon2i under a smaller cost: the stored algorithm and parameters are what is verified.
        let small = Params::new(8192, 3, 1, None).expect("params");
        let argon2i = Argon2::new_with_secret(pepper.0.expose_secret(), Algorithm::Argon2i, Version::V0x13, small)
            .expect("argon2");
        let old = PhcString::from_stored(argon2i.hash_password(b"pw", &salt).expect("hash").to_string());
        assert!(matches!(ours.verify(b"pw", &old), Ok(Verification::Valid { needs_rehash: true })));
        assert!(matches!(ours.verify(b"pv", &old), Ok(Verification::Invalid)));
    }

    #[test]
    fn the_working_memory_is_mapped_once_and_reused() {
        let memory = Arc::new(ArgonMemory::new(1));
        memory.prefault(OWASP_FLOOR);
        let first = memory.free.lock().expect("lock")[0].as_ptr();
        let hasher = PasswordHasher::with_memory(test_pepper(), OWASP_FLOOR, memory.clone()).expect("hasher");
        let phc = hasher.hash(b"pw").expect("hash");
        assert!(matches!(hasher.verify(b"pw", &phc), Ok(Verification::Valid { .. })));
        let free = memory.free.lock().expect("lock");
        assert_eq!(free.len(), 1, "one arena kept, as `keep` says");
        assert_eq!(free[0].as_ptr(), first, "the prefaulted arena served both");
        drop(free);
        // A stored hash under a larger cost needs a larger arena: made, and kept in place of the small one.
        let larger =
            PasswordHasher::with_memory(test_pepper(), ArgonCost { memory_kib: 24_576, ..OWASP_FLOOR }, memory.clone())
                .expect("hasher")
                .hash(b"pw")
                .expect("hash");
        assert!(matches!(hasher.verify(b"pw", &larger), Ok(Verification::Valid { needs_rehash: true })));
        assert_eq!(memory.free.lock().expect("lock")[0].len(), 24_576);
    }

    #[test]
    fn wrong_pepper_never_verifies() {
        let phc = hasher().hash(b"pw").expect("hash");
        let other_pepper = Pepper::new((0u8..48).map(|i| i.wrapping_mul(91).wrapping_add(3)).collect()).expect("p");
        let other = PasswordHasher::new(other_pepper, OWASP_FLOOR).expect("hasher");
        assert!(matches!(other.verify(b"pw", &phc), Ok(Verification::Invalid)));
    }

    #[test]
    fn parameter_change_asks_for_rehash() {
        let old = hasher().hash(b"pw").expect("hash");
        let stronger = PasswordHasher::new(test_pepper(), ArgonCost { memory_kib: 24_576, ..OWASP_FLOOR }).expect("h");
        assert!(matches!(stronger.verify(b"pw", &old), Ok(Verification::Valid { needs_rehash: true })));
        let upgraded = stronger.hash(b"pw").expect("hash");
        assert!(upgraded.as_str().contains("m=24576"));
        assert!(matches!(stronger.verify(b"pw", &upgraded), Ok(Verification::Valid { needs_rehash: false })));
    }

    #[test]
    fn verify_upgrading_rehashes_only_a_valid_secret_under_old_parameters() {
        let old = hasher().hash(b"pw").expect("hash");
        let stronger = PasswordHasher::new(test_pepper(), ArgonCost { memory_kib: 24_576, ..OWASP_FLOOR }).expect("h");
        let Ok(Checked::Rehashed(upgraded)) = stronger.verify_upgrading(b"pw", Some(&old)) else {
            panic!("a valid secret under old parameters is re-hashed")
        };
        assert_eq!(stronger.verify_upgrading(b"pw", Some(&upgraded)), Ok(Checked::Valid));
        assert_eq!(stronger.verify_upgrading(b"px", Some(&old)), Ok(Checked::Invalid));
        assert_eq!(stronger.verify_upgrading(b"pw", None), Ok(Checked::Invalid), "no hash: the decoy");
    }

    #[test]
    fn cost_below_the_floor_is_refused() {
        assert!(PasswordHasher::new(test_pepper(), ArgonCost { memory_kib: 4096, ..OWASP_FLOOR }).is_err());
        assert!(PasswordHasher::new(test_pepper(), ArgonCost { iterations: 1, ..OWASP_FLOOR }).is_err());
    }

    #[test]
    fn pepper_refusals() {
        assert_eq!(Pepper::new(vec![]).map(|_| ()), Err(PepperError::Missing));
        assert_eq!(Pepper::new(vec![b'k'; 31]).map(|_| ()), Err(PepperError::TooShort(31)));
        assert_eq!(Pepper::new(vec![b'a'; 64]).map(|_| ()), Err(PepperError::Placeholder));
        let sample = b"OPENALGO_PLACEHOLDER_API_KEY_PEPPER_REGENERATE_BEFORE_USE".to_vec();
        assert_eq!(Pepper::new(sample).map(|_| ()), Err(PepperError::Placeholder));
        assert_eq!(format!("{:?}", test_pepper()), "Pepper(**redacted**)");
    }

    #[test]
    fn debug_leaves_the_hash_out() {
        let phc = hasher().hash(b"pw").expect("hash");
        let printed = format!("{phc:?} {:?}", Checked::Rehashed(phc.clone()));
        assert_eq!(printed, "PhcString(..) Rehashed(PhcString(..))");
        assert!(!printed.contains("argon2"));
    }
}
