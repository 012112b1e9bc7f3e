//! `hyperctl volume create|ls|inspect|rm`: named volumes over Docker's `/volumes` routes.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;

use crate::client::{Client, enc};
use crate::table::table;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a named volume (an existing one of that name is kept as it is).
    Create {
        /// A label KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// [a-zA-Z0-9][a-zA-Z0-9_.-]+; without one the daemon picks a random name.
        name: Option<String>,
    },
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls {
        /// Only the names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes' details as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their data (not while a pod uses one).
    #[command(visible_alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Volume {
    name: String,
    driver: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeList {
    volumes: Vec<Volume>,
}

/// `--label KEY=VALUE` flags as a map; a flag without `=` is refused, naming it.
fn parse_labels(flags: &[String]) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for kv in flags {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => bail!("--label {kv:?}: expected KEY=VALUE"),
        }
    }
    Ok(labels)
}

pub async fn run(client: &Client, command: Command) -> Result<i32> {
    match command {
        Command::Create { labels, name } => {
            let body = serde_json::json!({
                "Name": name.unwrap_or_default(),
                "Driver": "local",
                "Labels": parse_labels(&labels)?,
            });
            let v: Volume = client
                .post_json("/volumes/create", serde_json::to_vec(&body)?)
                .await?;
            println!("{}", v.name);
            Ok(0)
        }
        Command::Ls { quiet } => {
            let list: VolumeList = client.get("/volumes").await?;
            if quiet {
                for v in list.volumes {
                    println!("{}", v.name);
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                rows.extend(list.volumes.into_iter().map(|v| vec![v.driver, v.name]));
                print!("{}", table(&rows));
            }
            Ok(0)
        }
        Command::Inspect { names } => {
            let mut code = 0;
            let mut found = Vec::new();
            for name in &names {
                match client
                    .get::<serde_json::Value>(&format!("/volumes/{}", enc(name)))
                    .await
                {
                    Ok(v) => found.push(v),
                    Err(e) => {
                        eprintln!("hyperctl ERROR: volume {name}: {e:#}");
                        code = 1;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&found)?);
            Ok(code)
        }
        Command::Rm { names } => {
            let mut code = 0;
            for name in &names {
                let path = format!("/volumes/{}", enc(name));
                match client.call(Method::DELETE, &path, None, Bytes::new()).await {
                    Ok(_) => println!("{name}"),
                    Err(e) => {
                        eprintln!("hyperctl ERROR: remove volume {name}: {e:#}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_pairs() {
        let labels = parse_labels(&["a=1".into(), "b=".into(), "c=x=y".into()]).unwrap();
        assert_eq!(labels["a"], "1");
        assert_eq!(labels["b"], "");
        assert_eq!(labels["c"], "x=y");
        let e = parse_labels(&["nolabel".into()]).unwrap_err().to_string();
        assert_eq!(e, "--label \"nolabel\": expected KEY=VALUE");
        assert!(parse_labels(&["=v".into()]).is_err());
    }
}
