//! `kavach`: the operator command. Reads the same configuration as the functions (environment
//! variables, Secrets Manager, KMS), so what it writes is exactly what they read.
#![expect(clippy::print_stdout, reason = "a command-line tool prints its results")]

mod keyring;
mod provision;

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, bail};
use shared::app::aws::AwsClients;
use shared::app::bootstrap;
use shared::core::clock::{Clock, SystemClock};
use shared::core::config::Config;
use shared::core::metrics::{MetricSink, Metrics};
use shared::store::app_secret;
use shared::store::bans::BanStore;
use shared::store::trackers::TrackerStore;
use shared::threats::{ManualBan, Threats};

const USAGE: &str = "usage:
  kavach provision [--template template.yaml] [--stack kavach] [--param Name=Value]... [--env-file PATH]
  kavach keyring init | keyring rotate | keyring status
  kavach keyring reencrypt [--limit N]   (rewrites ciphertext under the newest root; idempotent, rerun after a kill)
  kavach keyring retire <root id>        (refused while any ciphertext is still under that root)
  kavach setup-token
  kavach smtp set --host HOST [--port 465] [--starttls] [--username USER] --from ADDRESS [--ca-file PEM]
                  (the password is read from standard input)
  kavach user create <username>
  kavach user unlock <username>          (clears the failure count that locks reset by TOTP code)
  kavach user reset-password <username>  (a new random password, shown once; sessions end)
  kavach user reset-totp <username>      (a new TOTP secret, shown once; the old codes stop working)
  kavach apikey regenerate <username>
  kavach ban add <ip> [--hours N | --permanent] [--reason TEXT]
  kavach ban remove <ip>
  kavach ban list
  kavach ban reindex   (once after upgrading: lists bans written before the dashboard's index)
  kavach webhook create <username> --strategy NAME --exchange NSE --product MIS|CNC|NRML
                        --mode long|short|both --symbol SYMBOL=QUANTITY [--symbol ...]
  kavach webhook list <username>
  kavach webhook revoke <username> <handle>
  kavach webhook rebind <username> <handle>   (after the key was regenerated)";

#[tokio::main]
async fn main() {
    shared::core::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(error) = run(&args).await {
        eprintln!("kavach: {error:#}");
        std::process::exit(1);
    }
}

async fn run(args: &[String]) -> anyhow::Result<()> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["provision", rest @ ..] => provision_command(rest).await,
        ["keyring", "init"] => keyring_init(&Config::from_env()?, &AwsClients::from_env().await).await,
        ["keyring", "rotate"] => keyring_rotate().await,
        ["keyring", "status"] => keyring::status().await,
        ["keyring", "reencrypt", options @ ..] => keyring::reencrypt(options).await,
        ["keyring", "retire", id] => keyring::retire(id).await,
        ["setup-token"] => {
            let deps = bootstrap::init().await?;
            let token = deps.accounts().issue_setup_token().await.map_err(public)?;
            println!("One-time setup token (open /setup and enter it to create the administrator):");
            println!("{}", token.expose());
            Ok(())
        }
        ["smtp", "set", options @ ..] => smtp_set(options).await,
        ["user", "create", username] => {
            let deps = bootstrap::init().await?;
            let key = deps.accounts().create_user(username).await.map_err(public)?;
            println!("Created user `{username}` on the sandbox broker.");
            println!("API key (shown once, store it now): {}", key.expose());
            Ok(())
        }
        ["user", "unlock", username] => {
            let deps = bootstrap::init().await?;
            shared::identity::accounts::check_username(username).map_err(public)?;
            if !deps.accounts().clear_failures(username).await.map_err(public)? {
                bail!("no user `{username}`");
            }
            tracing::warn!(username, "account unlocked by the operator");
            println!("Unlocked `{username}`: its failure count is cleared and reset by TOTP code works again.");
            Ok(())
        }
        ["user", "reset-password", username] => {
            use secrecy::ExposeSecret;
            let deps = bootstrap::init().await?;
            let password = deps.accounts().operator_reset_password(username).await.map_err(public)?;
            tracing::warn!(username, "password reset by the operator");
            println!("New password for `{username}` (shown once; hand it over and have it changed on the dashboard):");
            println!("{}", password.expose_secret());
            println!("Every session of `{username}` has ended and outstanding reset links no longer work.");
            Ok(())
        }
        ["user", "reset-totp", username] => {
            let deps = bootstrap::init().await?;
            let totp = deps.accounts().operator_reset_totp(username).await.map_err(public)?;
            tracing::warn!(username, "TOTP re-enrolled by the operator");
            println!("New TOTP secret for `{username}` (shown once; enter it in the owner's authenticator app):");
            println!("secret: {}", totp.base32());
            println!("uri: {}", totp.provisioning_uri(username));
            println!("Codes of the old secret no longer work, and every session of `{username}` has ended.");
            Ok(())
        }
        ["apikey", "regenerate", username] => {
            let deps = bootstrap::init().await?;
            let (key, previous) = deps.accounts().regenerate_api_key(username).await.map_err(public)?;
            if let Some(previous) = previous {
                println!("Revoked key id {previous}.");
            }
            println!("New API key (shown once, store it now): {}", key.expose());
            Ok(())
        }
        ["ban", "add", ip, options @ ..] => ban_add(ip, options).await,
        ["ban", "remove", ip] => {
            let ip = parse_ip(ip)?;
            let security = SecurityStores::from_env().await?;
            // As the dashboard's unban: the detectors' current counts go too, the offender history stays.
            if security.threats().unban(ip).await.map_err(public)? {
                println!("Unbanned {ip}.");
            } else {
                println!("{ip} was not banned.");
            }
            Ok(())
        }
        ["ban", "list"] => {
            let security = SecurityStores::from_env().await?;
            let bans = security.bans.list_active(SystemClock.now()).await.map_err(public)?;
            for ban in &bans {
                let until =
                    ban.expires_at.map_or_else(|| "permanent".to_owned(), |at| format!("until epoch {}", at.secs()));
                println!("{}\t{until}\tcount {}\t{}\t{}", ban.ip, ban.ban_count, ban.created_by, ban.reason);
            }
            println!("{} active ban(s).", bans.len());
            Ok(())
        }
        ["ban", "reindex"] => {
            let security = SecurityStores::from_env().await?;
            let listed = security.bans.reindex().await.map_err(public)?;
            println!("{listed} ban(s) added to the dashboard's list.");
            Ok(())
        }
        ["webhook", "create", username, options @ ..] => webhook_create(username, options).await,
        ["webhook", "list", username] => {
            let deps = bootstrap::init().await?;
            let webhooks = deps.accounts().webhooks(username).await.map_err(public)?;
            for webhook in &webhooks {
                let status = webhook.suspended_at.map_or_else(
                    || "active".to_owned(),
                    |at| format!("suspended since epoch {} (key regenerated; rebind to resume)", at.secs()),
                );
                println!("{}	{status}	{}", webhook.handle, webhook.strategy);
            }
            println!("{} webhook(s).", webhooks.len());
            Ok(())
        }
        ["webhook", "revoke", username, handle] => {
            let deps = bootstrap::init().await?;
            deps.accounts().revoke_webhook(username, handle).await.map_err(public)?;
            println!("Revoked webhook {handle}: its URL is refused from now on.");
            Ok(())
        }
        ["webhook", "rebind", username, handle] => {
            let deps = bootstrap::init().await?;
            deps.accounts().rebind_webhook(username, handle).await.map_err(public)?;
            println!("Webhook {handle} is bound to the current API key and trades again, at the same URL.");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// Storage errors carry their detail in the source chain; show all of it to the operator.
fn public(error: shared::AppError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

/// The address a ban is stored under: IPv4-mapped IPv6 is the IPv4 address, as requests see it.
fn parse_ip(text: &str) -> anyhow::Result<IpAddr> {
    let ip: IpAddr = text.parse().with_context(|| format!("`{text}` is not an IP address"))?;
    Ok(shared::core::net::canonical(ip))
}

async fn smtp_set(options: &[&str]) -> anyhow::Result<()> {
    use shared::identity::mail::{Security, SmtpSettings};
    let (mut host, mut port, mut security, mut username, mut from, mut ca_pem) =
        (None, None, Security::Implicit, String::new(), None, None);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        if *option == "--starttls" {
            security = Security::StartTls;
            continue;
        }
        let value = *rest.next().with_context(|| format!("{option} needs a value"))?;
        match *option {
            "--host" => host = Some(value.to_owned()),
            "--port" => port = Some(value.parse::<u16>().with_context(|| format!("port `{value}` is not a number"))?),
            "--username" => username = value.to_owned(),
            "--from" => from = Some(value.to_owned()),
            "--ca-file" => ca_pem = Some(std::fs::read_to_string(value).with_context(|| format!("reading {value}"))?),
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("reading the SMTP password from standard input")?;
    let settings = SmtpSettings {
        host: host.context("--host is required")?,
        port: port.unwrap_or(if security == Security::Implicit { 465 } else { 587 }),
        security,
        username,
        password: password.trim_end_matches(['\r', '\n']).to_owned().into(),
        from: from.context("--from is required")?,
        ca_pem,
    };
    let deps = bootstrap::init().await?;
    deps.mail_settings().configure(&settings).await.map_err(public)?;
    println!("SMTP settings stored; the password is encrypted under the SMTP key.");
    Ok(())
}

async fn webhook_create(username: &str, options: &[&str]) -> anyhow::Result<()> {
    use shared::identity::webhooks::{Mode, Webhook};
    use shared::trading::orders::{Exchange, Product};
    fn choice<T: Copy>(name: &str, value: &str, choices: &[(&str, T)]) -> anyhow::Result<T> {
        choices.iter().find(|(wire, _)| *wire == value).map(|(_, v)| *v).with_context(|| {
            let names: Vec<&str> = choices.iter().map(|(wire, _)| *wire).collect();
            format!("{name} `{value}` is not one of {}", names.join(", "))
        })
    }
    let (mut strategy, mut exchange, mut product, mut mode) = (None, None, None, None);
    let mut symbols = BTreeMap::new();
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = *rest.next().with_context(|| format!("{option} needs a value"))?;
        match *option {
            "--strategy" => strategy = Some(value.to_owned()),
            "--exchange" => exchange = Some(choice("--exchange", value, Exchange::CHOICES)?),
            "--product" => product = Some(choice("--product", value, Product::CHOICES)?),
            "--mode" => {
                let modes = [("long", Mode::Long), ("short", Mode::Short), ("both", Mode::Both)];
                mode = Some(choice("--mode", value, &modes)?);
            }
            "--symbol" => {
                let (symbol, quantity) = value.split_once('=').context("--symbol takes SYMBOL=QUANTITY")?;
                let quantity: u64 =
                    quantity.parse().with_context(|| format!("quantity `{quantity}` is not a whole number"))?;
                symbols.insert(symbol.to_owned(), quantity);
            }
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    let webhook = Webhook {
        user: username.to_owned(),
        strategy: strategy.context("--strategy is required")?,
        exchange: exchange.context("--exchange is required")?,
        product: product.context("--product is required")?,
        mode: mode.context("--mode is required")?,
        symbols,
        suspended_at: None,
    };
    let deps = bootstrap::init().await?;
    let id = deps.accounts().create_webhook(&webhook).await.map_err(public)?;
    println!("Webhook for `{}` (strategy `{}`), shown once:", webhook.user, webhook.strategy);
    println!("  POST <ApiUrl>/strategy/webhook/{id}");
    println!("Handle (for list, revoke and rebind): {}", shared::identity::webhooks::handle_of(&id));
    Ok(())
}

/// What the ban commands use: the security table's stores and the metrics, without the keys a
/// full cold start would open.
struct SecurityStores {
    config: Config,
    bans: BanStore,
    trackers: TrackerStore,
    metrics: Metrics,
}

impl SecurityStores {
    async fn from_env() -> anyhow::Result<Self> {
        let config = Config::from_env()?;
        let aws = AwsClients::from_env().await;
        let table = config.tables.security.clone();
        Ok(Self {
            bans: BanStore::new(aws.dynamodb.clone(), table.clone()),
            trackers: TrackerStore::new(aws.dynamodb, table),
            // The same EMF lines a function prints, so a ban by hand is counted like any other.
            metrics: Metrics::new(config.stack_name.clone(), MetricSink::Stdout),
            config,
        })
    }

    /// The same ban service the dashboard and the detectors use.
    fn threats(&self) -> Threats<'_> {
        Threats {
            bans: &self.bans,
            trackers: &self.trackers,
            metrics: &self.metrics,
            never_ban: &self.config.never_ban,
            shared_senders: &self.config.shared_senders,
        }
    }
}

async fn ban_add(ip: &str, options: &[&str]) -> anyhow::Result<()> {
    let ip = parse_ip(ip)?;
    let mut hours: Option<u32> = Some(24);
    let mut reason = String::new();
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match *option {
            "--permanent" => hours = None,
            "--hours" => {
                let value = rest.next().context("--hours needs a number")?;
                hours = Some(value.parse().with_context(|| format!("--hours `{value}` is not a whole number"))?);
            }
            "--reason" => reason = (*rest.next().context("--reason needs text")?).to_owned(),
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    let security = SecurityStores::from_env().await?;
    let manual = ManualBan::new(ip, hours, &reason, &security.config.never_ban, None).map_err(public)?;
    let stored = security.threats().ban(&manual, SystemClock.now()).await.map_err(public)?;
    match stored.expires_at {
        Some(at) => println!("Banned {ip} until epoch {} (ban #{}).", at.secs(), stored.ban_count),
        None => println!("Banned {ip} permanently (ban #{}).", stored.ban_count),
    }
    Ok(())
}

/// Creates whatever the app secret lacks (the pepper, a one-root key ring), never replacing
/// either: the same [`app_secret::ensure`] the stack's `KeyRing` custom resource runs at deploy.
/// For a stack deployed before that custom resource existed, or to retry after it failed.
async fn keyring_init(config: &Config, aws: &AwsClients) -> anyhow::Result<()> {
    let ensured = app_secret::ensure(&aws.secrets, &aws.kms, config).await?;
    if let Some(error) = &ensured.unopened {
        bail!(
            "{} holds a pepper and a key ring, left as they are, but the ring does not open: {error}",
            config.secret_id
        );
    }
    let pepper = if ensured.pepper_created { "pepper generated" } else { "pepper kept" };
    let ring = if ensured.ring_created { "key ring created" } else { "key ring kept" };
    println!(
        "{} in {} under {}: {pepper}, {ring} (root ids, newest first: {:?}).",
        if ensured.changed() { "Stored" } else { "Nothing to do" },
        config.secret_id,
        config.kms_key_id,
        ensured.root_ids
    );
    Ok(())
}

/// Prepends a new root. Running functions write under it from their next write (each reads the
/// secret first) and reload on the first token their ring cannot open, so a warm container reads
/// what a newer one wrote. Then `keyring reencrypt` and, when it reports nothing left under the
/// old root, `keyring retire`.
async fn keyring_rotate() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let aws = AwsClients::from_env().await;
    let secret = app_secret::load(&aws.secrets, &config.secret_id).await?;
    let sealed = secret.sealed_ring.context(keyring::NO_RING)?;
    let ring = app_secret::open_ring(&aws.kms, &config, &sealed).await?;
    let rotated = ring.rotated(app_secret::new_root(&aws.kms, &config).await?);
    let sealed = app_secret::seal_ring(&aws.kms, &config, &rotated).await?;
    app_secret::store_ring(&aws.secrets, &config.secret_id, &sealed).await?;
    println!("Key ring rotated: {} root keys, newest id {:?}.", rotated.len(), rotated.newest_id());
    Ok(())
}

async fn provision_command(options: &[&str]) -> anyhow::Result<()> {
    let mut template_path = "template.yaml".to_owned();
    let mut stack_name = "kavach".to_owned();
    let mut overrides = Vec::new();
    let mut env_file = None;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let mut value = || rest.next().map(|v| (*v).to_owned()).with_context(|| format!("{option} needs a value"));
        match *option {
            "--template" => template_path = value()?,
            "--stack" => stack_name = value()?,
            "--env-file" => env_file = Some(value()?),
            "--param" => {
                let pair = value()?;
                let (name, val) =
                    pair.split_once('=').with_context(|| format!("--param `{pair}` is not Name=Value"))?;
                overrides.push((name.to_owned(), val.to_owned()));
            }
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    let text = std::fs::read_to_string(&template_path).with_context(|| format!("reading {template_path}"))?;
    let template: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {template_path}"))?;
    let aws = AwsClients::from_env().await;
    let stack = provision::Stack {
        name: stack_name,
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "ap-south-1".into()),
        account: "123456789012".into(),
        parameters: provision::parameters(&template, &overrides),
    };
    let provisioned = provision::provision(&template, &stack, &aws.dynamodb, &aws.kms, &aws.secrets).await?;
    let environment: BTreeMap<String, String> = provisioned.environment;
    let config = Config::from_lookup(|name| environment.get(name).cloned())?;
    keyring_init(&config, &aws).await?;
    // The environment holds names and ARNs only; no secret is ever written here.
    let lines: String = environment.iter().map(|(name, value)| format!("{name}={}\n", shell_quote(value))).collect();
    match env_file {
        Some(path) => {
            std::fs::write(&path, &lines).with_context(|| format!("writing {path}"))?;
            println!("Provisioned; function environment written to {path}.");
        }
        None => print!("{lines}"),
    }
    Ok(())
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
