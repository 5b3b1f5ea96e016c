//! Local state survives a restart (`scripts/emulator.py --state`, `scripts/dev`): an API key, an
//! administrator and a sandbox order outlive a clean stop and a kill -9 taken after the snapshot
//! interval; `scripts/dev --fresh` starts empty; and an emulator started without a state folder,
//! as `scripts/test` starts it, is empty even beside a snapshot.
//!
//! These start emulators and `scripts/dev` runs of their own, on their own ports and folders, with
//! `KAVACH_MOTO_SERVER` and `KAVACH_ADMIN_BIN`, which `scripts/test` sets; without them they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use kavach_tests::{ping_body, post, required_env, unique_ip, unique_name};
use tokio::io::{AsyncBufReadExt, BufReader};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The snapshot interval these tests run with (`KAVACH_SNAPSHOT_SECONDS`, `--snapshot-interval`).
const INTERVAL: Duration = Duration::from_secs(1);
/// The documented kill -9 bound: the interval plus the time one snapshot takes to write (tens of
/// milliseconds for a dev stack; README, "Local state"), with room for this loaded machine.
const BOUND: Duration = Duration::from_millis(1500);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("address").port()
}

fn scratch(prefix: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(unique_name(prefix));
    std::fs::create_dir_all(&directory).expect("scratch folder");
    directory
}

/// `kill SIGNAL -- TARGET`: a pid, or `-pgid` for a process group.
fn signal(signal: &str, target: &str) {
    let status = std::process::Command::new("kill").args([signal, "--", target]).status().expect("kill");
    assert!(status.success(), "kill {signal} {target}");
}

async fn wait_for_port(port: u16, what: &str) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not listen on {port} within 30 s");
}

/// An emulator of this test's own, with or without a state folder.
struct Emulator {
    child: tokio::process::Child,
    endpoint: String,
}

impl Emulator {
    async fn start(state: Option<&Path>, log: &Path) -> Self {
        Self::start_in(state, log, Path::new(REPO), INTERVAL).await
    }

    async fn start_in(state: Option<&Path>, log: &Path, directory: &Path, interval: Duration) -> Self {
        let port = free_port();
        let mut command = tokio::process::Command::new(required_env("KAVACH_MOTO_SERVER"));
        command.current_dir(directory);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(state) = state {
            command.arg("--state").arg(state).args(["--snapshot-interval", &interval.as_secs_f64().to_string()]);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("emulator log");
        let child = command.stdout(Stdio::null()).stderr(log).kill_on_drop(true).spawn().expect("start the emulator");
        wait_for_port(port, "the emulator").await;
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// SIGTERM, as `scripts/dev` stops it: the final snapshot is written before it exits.
    async fn stop(mut self) {
        signal("-TERM", &self.child.id().expect("running").to_string());
        let status = self.child.wait().await.expect("emulator exits");
        assert!(status.success(), "a clean stop exits 0: {status}");
    }

    /// kill -9: nothing after the last periodic snapshot reaches the disk.
    async fn kill_9(mut self) {
        self.child.kill().await.expect("kill -9");
    }
}

/// `kavach` with `environment` (a provisioned stack's) in place of the shared stack's.
async fn kavach(environment: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(args)
        .envs(environment)
        .output()
        .await
        .expect("run kavach")
}

/// `kavach provision` into `endpoint`, as `scripts/dev` runs it: the resolved environment (with
/// the endpoint) and what it printed.
async fn provision(endpoint: &str, folder: &Path) -> (BTreeMap<String, String>, String) {
    let env_file = folder.join("provisioned.env");
    let template = format!("{REPO}/template.yaml");
    let base = BTreeMap::from([("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned())]);
    let output =
        kavach(&base, &["provision", "--template", &template, "--env-file", env_file.to_str().expect("utf-8")]).await;
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "kavach provision: {printed}{}", String::from_utf8_lossy(&output.stderr));
    (read_env(&env_file, endpoint), printed)
}

fn read_env(path: &Path, endpoint: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut environment: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect();
    environment.insert("AWS_ENDPOINT_URL".into(), endpoint.into());
    environment
}

/// `kavach user create NAME`: the key it printed.
async fn create_user(environment: &BTreeMap<String, String>, name: &str) -> String {
    let output = kavach(environment, &["user", "create", name]).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "user create {name}: {printed}{}", String::from_utf8_lossy(&output.stderr));
    api_key_in(&printed).unwrap_or_else(|| panic!("no key in: {printed}"))
}

fn api_key_in(text: &str) -> Option<String> {
    text.split_whitespace().find(|word| word.starts_with("kav_")).map(str::to_owned)
}

/// The snapshot's modification time, if it exists.
fn written_at(state: &Path) -> Option<SystemTime> {
    std::fs::metadata(state.join("emulator.snapshot")).and_then(|meta| meta.modified()).ok()
}

#[tokio::test]
async fn a_write_reaches_the_snapshot_within_the_interval_and_survives_kill_9_and_a_clean_stop() {
    let folder = scratch("kavach-persist");
    let state = folder.join("state");
    let log = folder.join("emulator.log");
    let emulator = Emulator::start(Some(&state), &log).await;
    let (environment, _) = provision(&emulator.endpoint, &folder).await;

    // The bound, measured: from the answer to a write to a snapshot on disk that holds it.
    tokio::time::sleep(2 * INTERVAL).await;
    let before = written_at(&state);
    let alice = create_user(&environment, "alice").await;
    let answered = Instant::now();
    let on_disk = loop {
        if written_at(&state) != before {
            break answered.elapsed();
        }
        assert!(answered.elapsed() < 10 * INTERVAL, "no snapshot within 10 intervals of a write");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("persistence: a write was on disk {} ms after it was answered", on_disk.as_millis());
    assert!(on_disk <= BOUND, "a write reached the snapshot after {on_disk:?}, beyond the documented {BOUND:?}");

    // kill -9 once the bound has passed: alice survives. The next run snapshots only every
    // minute, so what it writes can reach the disk only by the final snapshot of a clean stop.
    emulator.kill_9().await;
    let emulator = Emulator::start_in(Some(&state), &log, Path::new(REPO), Duration::from_secs(60)).await;
    let (again, printed) = provision(&emulator.endpoint, &folder).await;
    assert!(
        printed.contains("pepper kept") && printed.contains("key ring kept"),
        "the pepper and the ring are kept, not made again: {printed}"
    );
    assert_eq!(again.get("KMS_KEY_ID"), environment.get("KMS_KEY_ID"), "the same KMS key");
    let environment =
        BTreeMap::from_iter(again.into_iter().chain([("AWS_ENDPOINT_URL".into(), emulator.endpoint.clone())]));
    let exists = kavach(&environment, &["user", "create", "alice"]).await;
    assert!(
        String::from_utf8_lossy(&exists.stderr).contains("already exists"),
        "alice outlived the kill -9: {}",
        String::from_utf8_lossy(&exists.stderr)
    );
    let bob = create_user(&environment, "bob").await;

    // A clean stop right after a write: the final snapshot holds it.
    emulator.stop().await;
    let emulator = Emulator::start(Some(&state), &log).await;
    let (environment, _) = provision(&emulator.endpoint, &folder).await;
    let deps = {
        let config = shared::core::config::Config::from_lookup(|name| environment.get(name).cloned())
            .expect("provisioned config");
        let aws = shared::app::aws::AwsClients::for_endpoint(&emulator.endpoint).await;
        shared::app::bootstrap::init_with(
            config,
            std::sync::Arc::new(shared::core::clock::SystemClock),
            aws,
            shared::core::metrics::MetricSink::Memory(Default::default()),
        )
        .await
        .expect("cold start: the sealed ring opens under the restored KMS key")
    };
    let gateway = kavach_tests::start_gateway(deps).await;
    for (name, key) in [("alice", &alice), ("bob", &bob)] {
        let reply = post(gateway, unique_ip(), "/api/v1/ping", &ping_body(key)).await;
        assert_eq!(reply.status, 200, "{name}'s key still works after the restarts: {}", reply.body);
    }
    emulator.stop().await;
    std::fs::remove_dir_all(&folder).ok();
}

#[tokio::test]
async fn an_emulator_without_a_state_folder_starts_empty_beside_a_snapshot() {
    let folder = scratch("kavach-persist-none");
    let state = folder.join("state");
    let log = folder.join("emulator.log");
    let emulator = Emulator::start(Some(&state), &log).await;
    provision(&emulator.endpoint, &folder).await;
    emulator.stop().await;
    assert!(written_at(&state).is_some(), "the stateful run left a snapshot");

    // As scripts/test starts it: no --state. It is run from a folder where the snapshot lies at
    // every place a default could look (state/, .kavach/state/), so no default may exist.
    let hidden = folder.join(".kavach/state");
    std::fs::create_dir_all(&hidden).expect("folder");
    std::fs::copy(state.join("emulator.snapshot"), hidden.join("emulator.snapshot")).expect("copy");
    let emulator = Emulator::start_in(None, &log, &folder, INTERVAL).await;
    let aws = shared::app::aws::AwsClients::for_endpoint(&emulator.endpoint).await;
    let tables = aws.dynamodb.list_tables().send().await.expect("list tables");
    assert!(tables.table_names().is_empty(), "no state read: {:?}", tables.table_names());
    emulator.stop().await;
    std::fs::remove_dir_all(&folder).ok();
}

#[tokio::test]
async fn a_snapshot_written_by_another_moto_is_refused_and_both_versions_named() {
    let folder = scratch("kavach-persist-version");
    let state = folder.join("state");
    let log = folder.join("emulator.log");
    let emulator = Emulator::start(Some(&state), &log).await;
    provision(&emulator.endpoint, &folder).await;
    emulator.stop().await;
    let path = state.join("emulator.snapshot");
    let bytes = std::fs::read(&path).expect("snapshot");
    let header_end = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).expect("two header lines").0;
    let header = String::from_utf8(bytes[..header_end].to_vec()).expect("utf-8 header");
    let (magic, fields) = header.split_once('\n').expect("magic line");
    let mut fields: serde_json::Value = serde_json::from_str(fields).expect("JSON header");
    let ours = fields["moto"].as_str().expect("moto version").to_owned();
    fields["moto"] = "0.0.1".into();
    let mut rewritten = format!("{magic}\n{fields}").into_bytes();
    rewritten.extend_from_slice(&bytes[header_end..]);
    std::fs::write(&path, rewritten).expect("rewrite");

    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(required_env("KAVACH_MOTO_SERVER"))
            .args(["-p", &free_port().to_string(), "--state"])
            .arg(&state)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the emulator exits at once")
    .expect("run the emulator");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {said}");
    assert!(said.contains("moto 0.0.1") && said.contains(&format!("moto {ours}")), "both versions named: {said}");
    assert!(said.contains("--fresh"), "the remedy is named: {said}");
    std::fs::remove_dir_all(&folder).ok();
}

/// A `scripts/dev` run of this test's own: its banner, and where it serves.
struct Dev {
    child: tokio::process::Child,
    /// Its process group, which its emulator and gateway share.
    group: String,
    stopped: bool,
    banner: String,
    gateway: std::net::SocketAddr,
}

impl Drop for Dev {
    /// A failed assertion must not leave its emulator and gateway running: the whole group goes.
    fn drop(&mut self) {
        if !self.stopped {
            std::process::Command::new("kill").args(["-KILL", "--", &self.group]).status().ok();
        }
    }
}

impl Dev {
    async fn start(home: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let mut command = tokio::process::Command::new(format!("{REPO}/scripts/dev"));
        command
            .args(args)
            .env("KAVACH_DEV_DIR", home)
            .env("KAVACH_PORT", port.to_string())
            .env("KAVACH_EMULATOR_PORT", free_port().to_string())
            .env("KAVACH_SNAPSHOT_SECONDS", INTERVAL.as_secs().to_string())
            // This suite runs under cargo, which has built both binaries.
            .env("KAVACH_DEV_SKIP_BUILD", "1")
            .env_remove("AWS_ENDPOINT_URL")
            // Its own process group, which Ctrl-C reaches as a whole.
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(home.join("dev.stderr")).expect("log"))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start scripts/dev");
        let stdout = child.stdout.take().expect("stdout");
        let gateway = format!("127.0.0.1:{port}").parse().expect("address");
        // Built first, so that a run which never prints its banner is stopped whole on the panic.
        let mut dev = Self {
            group: format!("-{}", child.id().expect("running")),
            child,
            stopped: false,
            banner: String::new(),
            gateway,
        };
        let mut lines = BufReader::new(stdout).lines();
        let banner = &mut dev.banner;
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read scripts/dev") {
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("Ctrl-C stops the stack.") {
                    return;
                }
            }
            panic!("scripts/dev ended before its banner:\n{banner}");
        };
        tokio::time::timeout(Duration::from_secs(120), read).await.expect("scripts/dev's banner within 120 s");
        dev
    }

    /// Ctrl-C: SIGINT to the whole process group, as a terminal sends it. scripts/dev waits for
    /// its emulator's final snapshot before it exits.
    async fn interrupt(mut self) {
        signal("-INT", &self.group);
        let status = self.child.wait().await.expect("scripts/dev exits");
        assert_eq!(status.code(), Some(130), "scripts/dev exits as interrupted");
        self.stopped = true;
    }

    async fn kill_9(mut self) {
        signal("-KILL", &self.group);
        self.child.wait().await.expect("scripts/dev exits");
        self.stopped = true;
    }

    /// The emulator endpoint the banner printed.
    fn banner_endpoint(&self) -> String {
        self.banner
            .lines()
            .find_map(|line| {
                line.trim().strip_prefix("emulator").map(|rest| rest.split_whitespace().next().unwrap_or(""))
            })
            .unwrap_or_else(|| panic!("no emulator line:\n{}", self.banner))
            .to_owned()
    }

    async fn ping(&self, key: &str) -> u16 {
        post(self.gateway, unique_ip(), "/api/v1/ping", &ping_body(key)).await.status
    }
}

#[tokio::test]
async fn scripts_dev_keeps_the_stack_across_ctrl_c_and_kill_9_and_fresh_starts_empty() {
    let home = scratch("kavach-dev");

    let first = Dev::start(&home, &[]).await;
    assert!(first.banner.contains("state      new"), "{}", first.banner);
    let trader = api_key_in(first.banner.lines().find(|l| l.contains("user       trader")).unwrap_or_default())
        .unwrap_or_else(|| panic!("the first run creates the demo user:\n{}", first.banner));
    let token = first
        .banner
        .lines()
        .find_map(|line| line.trim().strip_prefix("setup").map(|rest| rest.split_whitespace().next().unwrap_or("")))
        .unwrap_or_else(|| panic!("the first run issues a setup token:\n{}", first.banner))
        .to_owned();
    assert_eq!(first.ping(&trader).await, 200);
    let mut browser = kavach_tests::web::WebClient::new(first.gateway, unique_ip());
    let setup = browser
        .post_json(
            "/setup",
            &[
                ("setup_token", &token),
                ("username", "founder"),
                ("email", "founder@example.in"),
                ("password", "F0under!pass"),
                ("confirm_password", "F0under!pass"),
            ],
        )
        .await;
    assert_eq!(setup.status, 200, "the administrator is created: {}", setup.text);
    first.interrupt().await;

    // After Ctrl-C: everything is there, and nothing new is minted.
    let second = Dev::start(&home, &[]).await;
    assert!(second.banner.contains("state      restored"), "{}", second.banner);
    assert!(second.banner.contains("an administrator exists") || second.banner.contains("administrator exists"));
    assert!(api_key_in(&second.banner).is_none(), "no new key or demo user once set up:\n{}", second.banner);
    assert!(second.banner.contains("scripts/dev --fresh"), "the banner says how to start fresh");
    assert_eq!(second.ping(&trader).await, 200, "the demo user's key works after Ctrl-C");
    let closed = kavach_tests::web::WebClient::new(second.gateway, unique_ip()).get("/setup").await;
    assert_eq!(closed.status, 303, "setup stays closed: the administrator survived");
    let environment = read_env(&home.join("dev.env"), &second.banner_endpoint());
    let late = create_user(&environment, "late").await;
    tokio::time::sleep(BOUND).await;
    second.kill_9().await;

    // After kill -9 taken once the bound had passed: the last write is there too.
    let third = Dev::start(&home, &[]).await;
    assert_eq!(third.ping(&late).await, 200, "a key made {BOUND:?} before a kill -9 survives");
    assert_eq!(third.ping(&trader).await, 200);
    third.interrupt().await;

    let fresh = Dev::start(&home, &["--fresh"]).await;
    assert!(fresh.banner.contains("state      new"), "{}", fresh.banner);
    assert!(api_key_in(&fresh.banner).is_some(), "a fresh start mints a demo user again:\n{}", fresh.banner);
    assert_eq!(fresh.ping(&trader).await, 403, "the old key is gone with the old state");
    assert!(home.join("state.previous/emulator.snapshot").exists(), "the old state is kept aside");
    fresh.interrupt().await;
    std::fs::remove_dir_all(&home).ok();
}
