//! The `floe` binary: `floe serve` runs a broker; the other subcommands are a kcat-style
//! client of a running one. `floe bench` runs the separate `floe-bench` tool, so this
//! binary never links the benchmark's peers, proxy or sink.

mod acls;
mod admin;
mod bench;
mod consume;
mod consume_group;
mod export;
mod groups;
mod produce;
mod topics;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use floe_client::{ClientIdentity, FloeClient, TlsOptions};

#[derive(Debug, Parser)]
#[command(
    name = "floe",
    version,
    about = "floe: Kafka-style event streaming on object storage",
    long_about = None,
    args_override_self = true
)]
struct Cli {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Parses `args` as clap does, then checks what clap cannot: its `requires` does not
    /// see a global option given on the other side of the subcommand
    /// (`floe --cert c.pem consume t --key c.key`), so the pair is checked here.
    fn try_parse_checked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Self::try_parse_from(args)?;
        cli.server.check_identity_pair()?;
        Ok(cli)
    }
}

/// The server the client commands talk to, and the credentials they show it; accepted
/// before or after the subcommand.
#[derive(Args)]
pub(crate) struct ServerArg {
    /// Server URL.
    #[arg(
        long,
        short = 's',
        env = "FLOE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Bearer token sent with every request, for a server with authentication on.
    #[arg(
        long,
        env = "FLOE_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN",
        value_parser = parse_token
    )]
    token: Option<String>,
    /// CA certificates (PEM, one or more) trusted for an https:// server, besides the
    /// system's roots.
    #[arg(long, env = "FLOE_CA", global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM: the certificate, then any intermediates) for a server that
    /// wants mutual TLS; needs --key.
    #[arg(long, env = "FLOE_CERT", global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Private key of --cert (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(long, env = "FLOE_KEY", global = true, value_name = "FILE")]
    key: Option<PathBuf>,
}

impl ServerArg {
    /// --cert and --key go together: a usage error otherwise.
    fn check_identity_pair(&self) -> Result<(), clap::Error> {
        let message = match (&self.cert, &self.key) {
            (Some(_), None) => "--cert needs --key, the certificate's private key",
            (None, Some(_)) => "--key needs --cert, the certificate it is the key of",
            _ => return Ok(()),
        };
        Err(Cli::command().error(ErrorKind::MissingRequiredArgument, message))
    }

    /// A client of the server, with the token and TLS files if any were given.
    pub(crate) fn client(&self) -> anyhow::Result<FloeClient> {
        self.build_client(None)
    }

    /// Like [`ServerArg::client`], every request bounded by `timeout`.
    pub(crate) fn client_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> anyhow::Result<FloeClient> {
        self.build_client(Some(timeout))
    }

    /// Every command's client is built here, so each one gets the token and the TLS files.
    fn build_client(&self, timeout: Option<std::time::Duration>) -> anyhow::Result<FloeClient> {
        let tls = self.tls_options()?;
        let client = FloeClient::with_tls(&self.server, timeout, &tls).map_err(|error| {
            let files = self.tls_files();
            match files.is_empty() {
                true => anyhow::Error::new(error),
                false => anyhow::Error::new(error).context(files),
            }
        })?;
        Ok(match &self.token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }

    /// The contents of --ca, --cert and --key.
    fn tls_options(&self) -> anyhow::Result<TlsOptions> {
        let ca_pem = match &self.ca {
            Some(path) => Some(read_pem("--ca", path)?),
            None => None,
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert_pem: read_pem("--cert", cert)?,
                key_pem: read_pem("--key", key)?,
            }),
            (None, None) => None,
            // `Cli::try_parse_checked` refuses either without the other.
            _ => anyhow::bail!("--cert and --key go together"),
        };
        Ok(TlsOptions { ca_pem, identity })
    }

    /// The TLS files given, as flags: the context of an error in one of them.
    fn tls_files(&self) -> String {
        [
            ("--ca", &self.ca),
            ("--cert", &self.cert),
            ("--key", &self.key),
        ]
        .into_iter()
        .filter_map(|(flag, path)| {
            path.as_ref()
                .map(|path| format!("{flag} {}", path.display()))
        })
        .collect::<Vec<_>>()
        .join(" ")
    }
}

fn read_pem(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
}

/// Written by hand so the token never reaches a log or a panic message.
impl std::fmt::Debug for ServerArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerArg")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// A token is what an HTTP header can carry: visible ASCII, no spaces.
fn parse_token(text: &str) -> Result<String, String> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("a token is one or more visible ASCII characters, without spaces".into());
    }
    Ok(text.to_owned())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker. With no options: 127.0.0.1:8080, data under ./floe-data.
    Serve(Box<floe_server::ServeArgs>),
    /// List, create, describe, grow and delete topics.
    Topics {
        #[command(subcommand)]
        command: topics::TopicsCommand,
    },
    /// Produce records, one per line, from stdin or a file.
    Produce(produce::ProduceArgs),
    /// Print records of a topic from an offset, earliest or latest; follow the tail with -f;
    /// share the partitions with other consumers of a group with -g.
    Consume(consume::ConsumeArgs),
    /// List, describe and delete consumer groups; reset their committed offsets.
    Groups {
        #[command(subcommand)]
        command: groups::GroupsCommand,
    },
    /// The benchmark tool (runs `floe-bench`, installed beside `floe`): load runs against
    /// floe, s2-lite or a loopback sink, the disk limit, and helper servers
    /// (`floe bench run --help`).
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments passed to `floe-bench`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Export a range of a topic to Parquet files once (`floe export TOPIC --out URL`), or
    /// show the continuous export's progress (`floe export status TOPIC`).
    Export(export::ExportCommand),
    /// List, add and remove access control lists (needs a server with authorisation on).
    Acls {
        #[command(subcommand)]
        command: acls::AclsCommand,
    },
    /// Operator tasks.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::try_parse_checked(std::env::args_os()).unwrap_or_else(|error| error.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("floe: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("floe: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let client = || cli.server.client();
    match cli.command {
        Command::Serve(args) => floe_server::serve(*args).await?,
        Command::Topics { command } => topics::run(&client()?, command).await?,
        Command::Produce(args) => produce::run(&client()?, args).await?,
        Command::Consume(args) => return consume::run(&cli.server, args).await,
        Command::Groups { command } => groups::run(&client()?, command).await?,
        Command::Bench { args } => return bench::run(&cli.server.server, args),
        Command::Export(command) => export::run(&client()?, command).await?,
        Command::Acls { command } => acls::run(&client()?, command).await?,
        Command::Admin { command } => admin::run(command).await?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Writes command output to stdout; a reader that went away (`| head`) ends it quietly
/// rather than as an error.
pub(crate) fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_group_consume_parses_its_options() {
        let cli = Cli::try_parse_from([
            "floe",
            "consume",
            "orders",
            "-g",
            "order readers",
            "--commit-every",
            "0s",
            "--session-timeout",
            "10s",
            "-o",
            "latest",
        ])
        .expect("parses");
        let Command::Consume(args) = cli.command else {
            panic!("not a consume: {:?}", cli.command);
        };
        assert_eq!(args.group.as_deref(), Some("order readers"));
        assert_eq!(args.commit_every, std::time::Duration::ZERO);
        assert_eq!(args.session_timeout, std::time::Duration::from_secs(10));
        assert_eq!(args.offset, "latest");
    }

    #[test]
    fn groups_take_the_server_option_anywhere() {
        let cli = Cli::try_parse_from([
            "floe",
            "groups",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to",
            "earliest",
            "-s",
            "http://127.0.0.1:9",
        ])
        .expect("parses");
        assert_eq!(cli.server.server, "http://127.0.0.1:9");
        assert!(matches!(cli.command, Command::Groups { .. }));
    }

    #[test]
    fn a_one_shot_export_parses_its_range_and_destination() {
        let cli = Cli::try_parse_from([
            "floe",
            "export",
            "orders",
            "--from",
            "2026-12-02T10:00:00Z",
            "--to",
            "1500",
            "--out",
            "s3://bucket/exports",
            "-p",
            "2",
            "--value-format",
            "json",
            "--schema",
            r#"{"total":"double"}"#,
            "--target-file-bytes",
            "1048576",
        ])
        .expect("parses");
        let Command::Export(export) = cli.command else {
            panic!("not an export: {:?}", cli.command);
        };
        assert!(export.command.is_none());
        let once = export.once;
        assert_eq!(once.topic.as_deref(), Some("orders"));
        assert_eq!(once.out.as_deref(), Some("s3://bucket/exports"));
        assert_eq!(once.partition, Some(2));
        assert_eq!(once.target_file_bytes, Some(1_048_576));
        assert_eq!(format!("{:?}", once.from), "Time(1796205600000)");
        assert_eq!(format!("{:?}", once.to), "Offset(1500)");
        assert_eq!(once.value_format, Some(floe_core::ValueFormat::Json));
        assert!(once.schema.is_some());

        let defaults = Cli::try_parse_from(["floe", "export", "t", "--out", "file://x"])
            .expect("parses with the default range");
        let Command::Export(export) = defaults.command else {
            panic!("not an export");
        };
        assert_eq!(format!("{:?}", export.once.from), "Earliest");
        assert_eq!(format!("{:?}", export.once.to), "Latest");
    }

    #[test]
    fn export_status_is_a_subcommand_beside_the_one_shot_export() {
        let cli =
            Cli::try_parse_from(["floe", "export", "status", "orders", "--json"]).expect("parses");
        let Command::Export(export) = cli.command else {
            panic!("not an export: {:?}", cli.command);
        };
        let Some(super::export::ExportSubcommand::Status { topic, json }) = export.command else {
            panic!("not a status: {:?}", export.command);
        };
        assert_eq!(topic, "orders");
        assert!(json);
    }

    #[test]
    fn a_one_shot_export_refuses_what_it_cannot_do() {
        for args in [
            &["floe", "export", "orders"][..],
            &["floe", "export", "--out", "file://x"],
            &[
                "floe", "export", "orders", "--out", "file://x", "--from", "soon",
            ],
            &[
                "floe", "export", "orders", "--out", "file://x", "--to", "earliest",
            ],
            &[
                "floe",
                "export",
                "orders",
                "--out",
                "file://x",
                "--value-format",
                "avro",
            ],
            &[
                "floe", "export", "orders", "--out", "file://x", "--schema", "{}",
            ],
            &[
                "floe",
                "export",
                "orders",
                "--out",
                "file://x",
                "--target-file-bytes",
                "0",
            ],
            &["floe", "export", "status", "orders", "--out", "file://x"],
            &["floe", "export", "status"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} parsed");
        }
    }

    #[test]
    fn topics_alter_takes_sets_and_resets() {
        let cli = Cli::try_parse_from([
            "floe",
            "topics",
            "alter",
            "orders",
            "--set",
            "export.parquet.enabled=true",
            "--set",
            "export.parquet.value.format=json",
            "--reset",
            "retention.ms",
        ])
        .expect("parses");
        let Command::Topics {
            command: super::topics::TopicsCommand::Alter { name, set, reset },
        } = cli.command
        else {
            panic!("not an alter: {:?}", cli.command);
        };
        assert_eq!(name, "orders");
        assert_eq!(set.len(), 2);
        assert_eq!(set[0], ("export.parquet.enabled".into(), "true".into()));
        assert_eq!(reset, ["retention.ms"]);

        let error = Cli::try_parse_from(["floe", "topics", "alter", "t", "--set", "retention.ms"])
            .expect_err("no '='");
        assert!(error.to_string().contains("KEY=VALUE"), "{error}");
        assert!(Cli::try_parse_from(["floe", "topics", "alter", "t"]).is_err());
    }

    #[test]
    fn acls_add_takes_several_operations_and_allows_by_default() {
        let cli = Cli::try_parse_from([
            "floe",
            "acls",
            "add",
            "--principal",
            "alice",
            "--operation",
            "read,describe",
            "--resource",
            "topic:orders.*",
        ])
        .expect("parses");
        let Command::Acls {
            command: super::acls::AclsCommand::Add(args),
        } = cli.command
        else {
            panic!("not an acls add: {:?}", cli.command);
        };
        let debug = format!("{args:?}");
        assert!(debug.contains("[Read, Describe]"), "{debug}");
        assert!(debug.contains("deny: false"), "{debug}");
        assert!(debug.contains(r#"resource: "topic:orders.*""#), "{debug}");
    }

    #[test]
    fn acls_remove_and_list_parse_their_options() {
        let cli = Cli::try_parse_from([
            "floe",
            "acls",
            "remove",
            "--principal",
            "*",
            "--operation",
            "write",
            "--resource",
            "cluster",
            "--deny",
        ])
        .expect("parses");
        let Command::Acls {
            command: super::acls::AclsCommand::Remove(args),
        } = cli.command
        else {
            panic!("not an acls remove: {:?}", cli.command);
        };
        assert!(format!("{args:?}").contains("deny: true"), "{args:?}");

        let cli = Cli::try_parse_from([
            "floe",
            "acls",
            "list",
            "--principal",
            "alice",
            "--resource",
            "group:g",
            "--json",
        ])
        .expect("parses");
        let Command::Acls {
            command:
                super::acls::AclsCommand::List {
                    principal,
                    resource,
                    json,
                },
        } = cli.command
        else {
            panic!("not an acls list: {:?}", cli.command);
        };
        assert_eq!(principal.as_deref(), Some("alice"));
        assert_eq!(resource.as_deref(), Some("group:g"));
        assert!(json);
        assert!(Cli::try_parse_from(["floe", "acls", "list"]).is_ok());
    }

    #[test]
    fn acls_refuse_what_the_server_would() {
        for args in [
            &[
                "floe",
                "acls",
                "add",
                "--operation",
                "read",
                "--resource",
                "cluster",
            ][..],
            &[
                "floe",
                "acls",
                "add",
                "--principal",
                "a",
                "--resource",
                "cluster",
            ],
            &[
                "floe",
                "acls",
                "add",
                "--principal",
                "a",
                "--operation",
                "read",
            ],
            &[
                "floe",
                "acls",
                "add",
                "--principal",
                "a",
                "--operation",
                "read,eat",
                "--resource",
                "cluster",
            ],
            &[
                "floe",
                "acls",
                "remove",
                "--principal",
                "a",
                "--operation",
                "read",
                "--resource",
                "table:orders",
            ],
            &["floe", "acls", "list", "--resource", "topic:a*b"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} parsed");
        }
    }

    #[test]
    fn the_token_is_global_and_never_printed() {
        let cli =
            Cli::try_parse_from(["floe", "topics", "list", "--token", "s3cr3t"]).expect("parses");
        assert_eq!(cli.server.token.as_deref(), Some("s3cr3t"));
        let cli =
            Cli::try_parse_from(["floe", "--token", "s3cr3t", "acls", "list"]).expect("parses");
        assert_eq!(cli.server.token.as_deref(), Some("s3cr3t"));
        assert!(!format!("{cli:?}").contains("s3cr3t"), "{cli:?}");
        assert!(!format!("{:?}", cli.server.client().expect("a client")).contains("s3cr3t"));
        assert!(Cli::try_parse_from(["floe", "acls", "list", "--token", "a b"]).is_err());
        assert!(Cli::try_parse_from(["floe", "acls", "list", "--token", ""]).is_err());
    }

    #[test]
    fn the_tls_files_are_global_and_a_certificate_needs_its_key() {
        let cli = Cli::try_parse_checked([
            "floe", "--ca", "ca.pem", "topics", "list", "--cert", "c.pem", "--key", "c.key",
        ])
        .expect("parses");
        assert_eq!(cli.server.ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(cli.server.cert.as_deref(), Some(Path::new("c.pem")));
        assert_eq!(cli.server.key.as_deref(), Some(Path::new("c.key")));
        let cli =
            Cli::try_parse_checked(["floe", "--cert", "c.pem", "consume", "t", "--key", "c.key"])
                .expect("a pair split around the subcommand");
        assert!(cli.server.cert.is_some() && cli.server.key.is_some());
        assert!(Cli::try_parse_checked(["floe", "groups", "list", "--ca", "ca.pem"]).is_ok());
        for args in [
            &["floe", "--cert", "c.pem", "topics", "list"][..],
            &["floe", "topics", "list", "--key", "c.key"],
            &["floe", "--key", "c.key", "--ca", "ca.pem", "acls", "list"],
        ] {
            let error = Cli::try_parse_checked(args).expect_err("half a pair");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{args:?}"
            );
        }
    }

    #[test]
    fn the_tls_files_come_from_floe_ca_floe_cert_and_floe_key() {
        for (id, variable) in [
            ("ca", "FLOE_CA"),
            ("cert", "FLOE_CERT"),
            ("key", "FLOE_KEY"),
        ] {
            let arg = Cli::command()
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .unwrap_or_else(|| panic!("a --{id} option"))
                .clone();
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(variable)));
            assert!(arg.is_global_set());
        }
        // As for the token: a variable cargo sets stands in for FLOE_CERT, and a certificate
        // from the environment needs its key as one from the command line does.
        if std::env::var_os("CARGO_PKG_NAME").is_none() {
            return;
        }
        let command = Cli::command().mut_arg("cert", |arg| arg.env("CARGO_PKG_NAME"));
        let parse = |args: &[&str]| {
            let matches = command.clone().try_get_matches_from(args)?;
            let cli = Cli::from_arg_matches(&matches)?;
            cli.server.check_identity_pair().map(|()| cli)
        };
        assert!(parse(&["floe", "topics", "list"]).is_err());
        let cli = parse(&["floe", "topics", "list", "--key", "c.key"]).expect("parses");
        assert!(cli.server.cert.is_some());
    }

    #[test]
    fn unreadable_or_wrong_tls_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not PEM at all\n").expect("write");
        let client_error = |args: &[&str]| {
            let cli = Cli::try_parse_checked(args).expect("parses");
            format!("{:#}", cli.server.client().expect_err("no client"))
        };
        let (missing, junk) = (missing.display().to_string(), junk.display().to_string());

        let message = client_error(&["floe", "--ca", &missing, "topics", "list"]);
        assert!(message.contains(&format!("--ca {missing}")), "{message}");
        let message = client_error(&["floe", "--ca", &junk, "topics", "list"]);
        assert!(message.contains(&format!("--ca {junk}")), "{message}");
        assert!(message.contains("CA certificates"), "{message}");
        let message = client_error(&["floe", "--cert", &junk, "--key", &missing, "topics", "list"]);
        assert!(message.contains(&format!("--key {missing}")), "{message}");
        let message = client_error(&["floe", "--cert", &junk, "--key", &junk, "topics", "list"]);
        assert!(message.contains(&format!("--cert {junk}")), "{message}");
        assert!(message.contains("client certificate"), "{message}");
    }

    #[test]
    fn the_token_comes_from_floe_token_and_its_value_stays_out_of_help() {
        let token = Cli::command()
            .get_arguments()
            .find(|arg| arg.get_id() == "token")
            .expect("a --token option")
            .clone();
        assert_eq!(token.get_env(), Some(std::ffi::OsStr::new("FLOE_TOKEN")));
        assert!(token.is_hide_env_values_set());
        assert!(token.is_global_set());

        // Tests cannot set variables (no unsafe), so the option reads one cargo sets when
        // it runs them: the lookup and the check are the real ones.
        let Some(package) = std::env::var_os("CARGO_PKG_NAME") else {
            return;
        };
        let mut command = Cli::command().mut_arg("token", |arg| arg.env("CARGO_PKG_NAME"));
        let matches = command
            .clone()
            .try_get_matches_from(["floe", "acls", "list"])
            .expect("parses");
        let from_env = matches
            .get_one::<String>("token")
            .expect("from the variable");
        assert_eq!(std::ffi::OsStr::new(from_env), package);
        let help = command.render_long_help().to_string();
        assert!(help.contains("CARGO_PKG_NAME"), "{help}");
        assert!(!help.contains(from_env.as_str()), "{help}");
    }
}
