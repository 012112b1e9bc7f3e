//! hyperctl: the command line client of hyperd's REST API. Parses flags and runs one command
//! from [`commands`]; errors go to stderr as `hyperctl ERROR: …` with exit status 255, and a
//! container's exit status becomes hyperctl's.

mod client;
mod commands;
mod credentials;
mod progress;
mod reference;
mod session;
mod stdcopy;
mod table;

use clap::Parser;

use crate::client::{Client, Host};

/// The daemon's default socket.
const DEFAULT_HOST: &str = "unix:///var/run/hyper.sock";

#[derive(Debug, Parser)]
#[command(
    name = "hyperctl",
    version,
    about = "Run pods in lightweight VMs through hyperd"
)]
struct Cli {
    /// The daemon: unix:///path or tcp://HOST:PORT.
    #[arg(short = 'H', long = "host", env = "HYPER_HOST", default_value = DEFAULT_HOST, global = true)]
    host: String,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() {
    // A closed stdout (`hyperctl … | head`) ends us quietly, as it does any Unix tool, rather
    // than a failed write (Rust ignores SIGPIPE by default).
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(e.into()),
    };
    let code = runtime.block_on(async {
        let client = Client::new(Host::parse(&cli.host)?);
        commands::run(&client, cli.command).await
    });
    // exit() rather than returning: a blocked stdin reader must not hold the process.
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => fail(e),
    }
}

fn fail(e: anyhow::Error) -> ! {
    eprintln!("hyperctl ERROR: {e:#}");
    // Docker's status for a refused terminal request; 255 for the rest, as hyperctl 1.1.
    let code = if e.downcast_ref::<session::NotATty>().is_some() {
        1
    } else {
        255
    };
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Command;

    fn parse(args: &[&str]) -> Command {
        let argv = std::iter::once("hyperctl").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    fn rejects(args: &[&str]) -> String {
        let argv = std::iter::once("hyperctl").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => panic!("{args:?} parsed as {:?}", cli.command),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn api_spec_writes_stdout_or_a_file() {
        let Command::ApiSpec(a) = parse(&["api-spec"]) else {
            panic!()
        };
        assert!(a.output.is_none());
        let Command::ApiSpec(a) = parse(&["api-spec", "-o", "api.yaml"]) else {
            panic!()
        };
        assert_eq!(a.output.as_deref(), Some(std::path::Path::new("api.yaml")));
        rejects(&["api-spec", "extra"]);
    }

    #[test]
    fn build_flags() {
        let Command::Build(a) = parse(&[
            "build",
            "-t",
            "app:1",
            "--tag",
            "app:latest",
            "-f",
            "sub/Dockerfile",
            "--build-arg",
            "V=1",
            "--build-arg",
            "HOME",
            "--no-cache",
            "-q",
            "--pull",
            "--label",
            "k=v",
            "ctx",
        ]) else {
            panic!()
        };
        assert_eq!(a.tags, ["app:1", "app:latest"]);
        assert_eq!(a.file.as_deref(), Some("sub/Dockerfile"));
        assert_eq!(a.build_args, ["V=1", "HOME"]);
        assert!(a.no_cache && a.quiet && a.pull);
        assert_eq!(a.labels, ["k=v"]);
        assert_eq!(a.context, "ctx");
        let Command::Build(a) = parse(&["build", "-"]) else {
            panic!()
        };
        assert_eq!(a.context, "-");
        assert!(a.tags.is_empty() && !a.quiet);
        rejects(&["build"]);
        rejects(&["build", "a", "b"]);
    }

    #[test]
    fn logs_tail_takes_a_negative_count() {
        let Command::Logs(a) = parse(&["logs", "--tail", "-1", "web"]) else {
            panic!()
        };
        assert_eq!((a.tail.as_str(), a.container.as_str()), ("-1", "web"));
    }

    #[test]
    fn pull_and_push_take_one_image() {
        let Command::Pull(a) = parse(&["pull", "127.0.0.1:5000/app@sha256:abc"]) else {
            panic!()
        };
        assert_eq!(a.image, "127.0.0.1:5000/app@sha256:abc");
        let Command::Push(a) = parse(&["push", "127.0.0.1:5000/app:1"]) else {
            panic!()
        };
        assert_eq!(a.image, "127.0.0.1:5000/app:1");
        rejects(&["pull"]);
        rejects(&["push", "a", "b"]);
    }

    #[test]
    fn login_flags() {
        let Command::Login(a) = parse(&["login", "-u", "alice", "-p", "pw", "127.0.0.1:5000"])
        else {
            panic!()
        };
        assert_eq!(
            (
                a.username.as_deref(),
                a.password.as_deref(),
                a.password_stdin
            ),
            (Some("alice"), Some("pw"), false)
        );
        assert_eq!(a.server.as_deref(), Some("127.0.0.1:5000"));
        let Command::Login(a) = parse(&["login", "--username", "bob", "--password-stdin"]) else {
            panic!()
        };
        assert!(a.password_stdin && a.server.is_none());
        let Command::Login(a) = parse(&["login"]) else {
            panic!()
        };
        assert!(a.username.is_none() && a.password.is_none());
        // A password twice, and --password-stdin without a username, are refused.
        assert!(
            rejects(&["login", "-u", "a", "-p", "x", "--password-stdin"])
                .contains("cannot be used with")
        );
        assert!(rejects(&["login", "--password-stdin"]).contains("--username"));
    }

    #[test]
    fn logout_takes_an_optional_server() {
        let Command::Logout(a) = parse(&["logout"]) else {
            panic!()
        };
        assert!(a.server.is_none());
        let Command::Logout(a) = parse(&["logout", "reg:5000"]) else {
            panic!()
        };
        assert_eq!(a.server.as_deref(), Some("reg:5000"));
    }

    #[test]
    fn images_flags() {
        let Command::Images(a) = parse(&["images", "-a", "-q", "--digests"]) else {
            panic!()
        };
        assert!(a.all && a.quiet && a.digests);
        let Command::Images(a) = parse(&["images"]) else {
            panic!()
        };
        assert!(!a.all && !a.quiet && !a.digests);
    }

    #[test]
    fn rmi_flags_and_images() {
        let Command::Rmi(a) = parse(&["rmi", "-f", "--no-prune", "busybox", "sha256:abc"]) else {
            panic!()
        };
        assert!(a.force && a.no_prune);
        assert_eq!(a.images, ["busybox", "sha256:abc"]);
        let Command::Rmi(a) = parse(&["rmi", "busybox"]) else {
            panic!()
        };
        assert!(!a.force && !a.no_prune);
        rejects(&["rmi"]);
    }

    #[test]
    fn save_flags() {
        let Command::Save(a) = parse(&["save", "-o", "/tmp/x.tar", "busybox", "alpine:3"]) else {
            panic!()
        };
        assert_eq!(
            a.output.as_deref(),
            Some(std::path::Path::new("/tmp/x.tar"))
        );
        assert_eq!(a.format, commands::save::Format::Docker);
        assert_eq!(a.images, ["busybox", "alpine:3"]);
        let Command::Save(a) = parse(&["save", "--format", "oci", "busybox"]) else {
            panic!()
        };
        assert_eq!(a.format, commands::save::Format::Oci);
        assert!(a.output.is_none());
        assert!(rejects(&["save", "--format", "zip", "busybox"]).contains("invalid value"));
        rejects(&["save", "-o", "x.tar"]);
    }

    #[test]
    fn load_reads_a_file_or_stdin() {
        let Command::Load(a) = parse(&["load", "-i", "x.tar.gz"]) else {
            panic!()
        };
        assert_eq!(a.input.as_deref(), Some(std::path::Path::new("x.tar.gz")));
        let Command::Load(a) = parse(&["load"]) else {
            panic!()
        };
        assert!(a.input.is_none());
    }

    #[test]
    fn tag_and_inspect() {
        let Command::Tag(a) = parse(&["tag", "busybox", "127.0.0.1:5000/bb:1"]) else {
            panic!()
        };
        assert_eq!(
            (a.source.as_str(), a.target.as_str()),
            ("busybox", "127.0.0.1:5000/bb:1")
        );
        rejects(&["tag", "busybox"]);
        let Command::Inspect(a) = parse(&["inspect", "busybox", "alpine"]) else {
            panic!()
        };
        assert_eq!(a.images, ["busybox", "alpine"]);
        rejects(&["inspect"]);
    }
    #[test]
    fn publish_and_net_flags_of_run_and_create() {
        let Command::Run(a) = parse(&[
            "run",
            "-d",
            "-p",
            "8080:80",
            "--publish",
            "53:53/udp",
            "--net",
            "none",
            "busybox",
            "httpd",
            "-p",
            "80",
        ]) else {
            panic!()
        };
        assert_eq!(a.pod.publish, ["8080:80", "53:53/udp"]);
        assert_eq!(a.pod.net, Some(commands::create::NetMode::None));
        // Flags after the image belong to the command.
        assert_eq!(a.pod.args, ["busybox", "httpd", "-p", "80"]);
        let spec: serde_json::Value = serde_json::from_slice(&a.pod.spec().unwrap()).unwrap();
        assert_eq!(spec["network"], "none");
        assert_eq!(
            spec["portmappings"],
            serde_json::json!([
                {"containerPort": "80", "hostPort": "8080", "protocol": "tcp"},
                {"containerPort": "53", "hostPort": "53", "protocol": "udp"},
            ])
        );
        let Command::Create(a) = parse(&["create", "--net", "bridge", "busybox"]) else {
            panic!()
        };
        let spec: serde_json::Value = serde_json::from_slice(&a.pod.spec().unwrap()).unwrap();
        assert_eq!(spec["network"], "bridge");
        assert!(spec.get("portmappings").is_none(), "{spec}");
        // No --net: the daemon's default, nothing in the spec.
        let Command::Create(a) = parse(&["create", "busybox"]) else {
            panic!()
        };
        let spec: serde_json::Value = serde_json::from_slice(&a.pod.spec().unwrap()).unwrap();
        assert!(spec.get("network").is_none(), "{spec}");
        assert!(rejects(&["run", "--net", "host", "busybox"]).contains("invalid value"));
    }

    #[test]
    fn bad_publish_values_fail_before_any_request() {
        let Command::Run(a) = parse(&["run", "-p", "99999:80", "busybox"]) else {
            panic!()
        };
        let e = a.pod.spec().unwrap_err().to_string();
        assert!(e.contains("\"99999\""), "{e}");
        let Command::Create(a) = parse(&["create", "--podfile", "pod.json", "-p", "80:80"]) else {
            panic!()
        };
        assert!(a.pod.spec().unwrap_err().to_string().contains("--podfile"));
    }

    #[test]
    fn port_and_portmap_take_a_pod_and_mappings() {
        let Command::Port(a) = parse(&["port", "web"]) else {
            panic!()
        };
        assert_eq!((a.pod.as_str(), a.port.as_deref()), ("web", None));
        let Command::Port(a) = parse(&["port", "web", "80/udp"]) else {
            panic!()
        };
        assert_eq!(a.port.as_deref(), Some("80/udp"));
        let Command::Portmap(commands::port::PortmapCommand::Add(a)) =
            parse(&["portmap", "add", "web", "8080:80", "9000:90/udp"])
        else {
            panic!()
        };
        assert_eq!(
            (a.pod.as_str(), &a.mappings[..]),
            (
                "web",
                &["8080:80".to_string(), "9000:90/udp".to_string()][..]
            )
        );
        let Command::Portmap(commands::port::PortmapCommand::Rm(a)) =
            parse(&["portmap", "rm", "web", "8080:80"])
        else {
            panic!()
        };
        assert_eq!(a.mappings, ["8080:80"]);
        rejects(&["portmap", "add", "web"]);
        rejects(&["port"]);
    }
}
