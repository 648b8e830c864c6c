//! The `outpost` binary: command line, runtime and signals. Everything else is the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use outpost::config::Config;

/// mimalloc rather than the system allocator: with the cache churning objects of one size
/// among small allocations, glibc's heap fragments (measured: 1.41× the configured cache
/// memory after the Zipf benchmark, against 1.15× with mimalloc at the same throughput).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "An edge CDN node: a clustered RFC 9111 caching reverse proxy"
)]
struct Cli {
    /// Configuration file (same as `outpost run --config FILE`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the default).
    Run,
    /// Validate a configuration file and exit.
    Check {
        /// The file (same as --config).
        file: Option<PathBuf>,
    },
    /// Start a self-contained demo: a demo origin and a 3-node cluster on loopback.
    Demo {
        /// Two regions of two nodes filling from a shield node instead (other ports).
        #[arg(long)]
        regions: bool,
        /// Move every port of the demo: the first node listens here, the origin one above
        /// (default 8080, or 8180 with --regions).
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Print the PowerDNS zone (LUA records) for the file's [steering] and [[region]] tables.
    DnsZone {
        /// Print the pdns.conf settings the zone needs instead of the zone.
        #[arg(long)]
        pdns_settings: bool,
    },
    /// A live view of a node: requests by cache result, hit ratios, origin, members, the
    /// busiest URLs and errors, refreshed every second.
    Top {
        #[command(flatten)]
        admin: AdminArgs,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Follow a node's access log (JSON lines), filtered.
    Log {
        #[command(flatten)]
        admin: AdminArgs,
        /// A status (404) or a class (5xx).
        #[arg(long)]
        status: Option<String>,
        /// A cache result: hit, miss, stale, revalidated, peer, pass, error.
        #[arg(long)]
        cache: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        path_prefix: Option<String>,
        #[arg(long)]
        site: Option<String>,
    },
    /// Purge URLs and tags everywhere; exit status 1 unless every node confirmed.
    Purge {
        #[command(flatten)]
        admin: AdminArgs,
        /// Absolute URLs (every variant, both schemes).
        urls: Vec<String>,
        /// Entries carrying this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Mark stale instead of removing.
        #[arg(long)]
        soft: bool,
    },
    /// A node's view of its cluster; exit status 1 if a member is down.
    Cluster {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How an operator command reaches a node's admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener, IP:PORT (default: [admin] listen of --config).
    #[arg(long)]
    admin: Option<String>,
    /// The bearer token (default: $OUTPOST_ADMIN_TOKEN, then [admin] token of --config).
    #[arg(long)]
    token: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check { file: Some(file) } if cli.config.as_ref().is_some_and(|c| *c != file) => {
            refuse(
                "check takes one file: give it as `outpost check FILE` or `--config FILE`, not both",
            )
        }
        Command::Check { file } => check(file.or(cli.config)),
        Command::Run => exit(serve(cli.config)),
        Command::Demo { .. } if cli.config.is_some() => refuse(
            "the demo runs on its embedded configuration and reads no --config; \
             run a node on a file with `outpost run --config FILE`",
        ),
        Command::Demo { regions, base_port } => exit(demo(
            if regions {
                outpost::demo::Demo::Regions
            } else {
                outpost::demo::Demo::Cluster
            },
            base_port,
        )),
        Command::DnsZone { pdns_settings } => exit(dns_zone(cli.config, pdns_settings)),
        Command::Top {
            admin,
            interval,
            count,
        } => ops(&admin, cli.config.as_deref(), |client| async move {
            let options = outpost::ops::top::Options {
                every: std::time::Duration::from_secs_f64(interval.max(0.1)),
                count,
                redraw: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            };
            outpost::ops::top::run(client, options).await.map(|()| true)
        }),
        Command::Log {
            admin,
            status,
            cache,
            host,
            path_prefix,
            site,
        } => ops(&admin, cli.config.as_deref(), |client| async move {
            let filters = outpost::ops::log::Filters {
                status,
                cache,
                host,
                path_prefix,
                site,
            };
            outpost::ops::log::run(&client, &filters)
                .await
                .map(|()| true)
        }),
        Command::Purge {
            admin,
            urls,
            tags,
            soft,
        } => ops(&admin, cli.config.as_deref(), |client| async move {
            let purge = outpost::ops::purge::Purge { urls, tags, soft };
            let answer = outpost::ops::purge::send(&client, &purge).await?;
            let (text, complete) = outpost::ops::purge::render(&answer);
            print!("{text}");
            Ok(complete)
        }),
        Command::Cluster { admin } => ops(&admin, cli.config.as_deref(), |client| async move {
            let page = outpost::ops::cluster::fetch(&client).await?;
            let (text, all_up) = outpost::ops::cluster::render(&page);
            print!("{text}");
            Ok(all_up)
        }),
    }
}

/// Run an operator command against a node's admin API: exit 0 when it says all is well, 1
/// when not (a node did not confirm, a member is down), 2 when the node could not be asked.
fn ops<F, Fut>(args: &AdminArgs, config: Option<&std::path::Path>, command: F) -> ExitCode
where
    F: FnOnce(outpost::ops::client::AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<bool, outpost::ops::OpsError>>,
{
    let target =
        match outpost::ops::Target::resolve(args.admin.as_deref(), args.token.as_deref(), config) {
            Ok(target) => target,
            Err(e) => {
                eprintln!("outpost: {e}");
                return ExitCode::from(e.exit_code());
            }
        };
    let Ok(runtime) = runtime() else {
        eprintln!("outpost: cannot start the runtime");
        return ExitCode::from(2);
    };
    let client = outpost::ops::client::AdminClient::new(target);
    match runtime.block_on(command(client)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn check(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("usage: outpost check FILE");
        return ExitCode::from(2);
    };
    match Config::load(&path) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("{}: warning: {warning}", path.display());
            }
            println!("{}: ok ({} site(s))", path.display(), config.sites.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// The zone's serial is the time it was written, so a newer file has a larger serial.
fn dns_zone(path: Option<PathBuf>, pdns_settings: bool) -> anyhow::Result<()> {
    let path = path.context("--config FILE is required")?;
    let steering = Config::load_steering(&path)?.with_context(|| {
        format!(
            "{}: no [steering] table: nothing to write a zone from",
            path.display()
        )
    })?;
    if pdns_settings {
        print!("{}", outpost::steering::pdns_settings(&steering));
        return Ok(());
    }
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    print!("{}", outpost::steering::zone_file(&steering, serial));
    Ok(())
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let path = path.context("--config FILE is required (or try `outpost demo`)")?;
    let config = Config::load(&path)?;
    outpost::observability::init_logging(&config.log.level);
    runtime()?.block_on(async {
        let listeners = outpost::Listeners::bind(&config).await?;
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        tokio::spawn(reload_on_sighup(reload));
        outpost::run_with_reloads(config, listeners, shutdown_signal(), Some(path), reloads)
            .await?;
        Ok(())
    })
}

/// SIGHUP: the node re-reads its file; an invalid one is refused (logged with its position)
/// and the running configuration stays.
async fn reload_on_sighup(reload: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if reload.send(()).await.is_err() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = reload;
}

/// A command line that cannot mean what it says: exit status 2, as for clap's own errors.
fn refuse(why: &str) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::from(2)
}

fn demo(which: outpost::demo::Demo, base_port: Option<u16>) -> anyhow::Result<()> {
    let layout = outpost::demo::Layout::new(which, base_port)?;
    outpost::observability::init_logging("warn");
    runtime()?.block_on(async {
        outpost::demo::run(layout, shutdown_signal()).await?;
        Ok(())
    })
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
