//! `hyperctl list [pod|container|vm]`: the tables of hyperctl 1.1.

use anyhow::Result;

use hyper_proto::rest::ListResponse;

use crate::client::{Client, enc};
use crate::table::table;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Item {
    Pod,
    Container,
    Vm,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum, default_value = "pod")]
    pub item: Item,
    /// Only this pod.
    #[arg(short = 'p', long)]
    pub pod: Option<String>,
    /// Only this VM.
    #[arg(short = 'm', long)]
    pub vm: Option<String>,
    /// Only pods (or containers) with this label: KEY=VALUE, or KEY for any value; repeat to
    /// require several.
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Print only the first column.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let (item, header): (&str, &[&str]) = match args.item {
        Item::Pod => ("pod", &["POD ID", "POD Name", "VM name", "Status"]),
        Item::Container => ("container", &["Container ID", "Name", "POD ID", "Status"]),
        Item::Vm => ("vm", &["VM name", "POD ID", "Status"]),
    };
    let mut path = format!("/list?item={item}");
    if let Some(p) = &args.pod {
        path.push_str(&format!("&pod={}", enc(p)));
    }
    if let Some(v) = &args.vm {
        path.push_str(&format!("&vm={}", enc(v)));
    }
    if !args.label.is_empty() {
        path.push_str(&format!("&label={}", enc(&args.label.join(","))));
    }
    let list: ListResponse = client.get(&path).await?;
    let mut rows: Vec<Vec<String>> = Vec::new();
    if !args.quiet {
        rows.push(header.iter().map(|s| s.to_string()).collect());
    }
    for row in list.rows() {
        let cells: Vec<String> = row
            .split(':')
            .map(|s| s.trim_start_matches('/').to_string())
            .collect();
        rows.push(if args.quiet {
            cells.into_iter().take(1).collect()
        } else {
            cells
        });
    }
    print!("{}", table(&rows));
    Ok(0)
}
