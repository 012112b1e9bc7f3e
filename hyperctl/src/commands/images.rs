//! `hyperctl images`.

use anyhow::Result;

use hyper_proto::rest::ImagesResponse;

use crate::client::Client;
use crate::table::{human_size, table, time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show all images (the same list today: there are no intermediate images yet).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print only image ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let all = if args.all { "yes" } else { "no" };
    let list: ImagesResponse = client.get(&format!("/images/get?all={all}")).await?;
    let mut rows = Vec::new();
    if !args.quiet {
        rows.push(
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "VIRTUAL SIZE"]
                .map(String::from)
                .to_vec(),
        );
    }
    for row in &list.images_list {
        // repo may hold a registry port (reg:5000/x), so split from the right.
        let mut parts = row.rsplitn(5, ':');
        let (size, created, id, tag, repo) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let short: String = id.chars().take(12).collect();
        if args.quiet {
            rows.push(vec![short]);
            continue;
        }
        rows.push(vec![
            repo.into(),
            tag.into(),
            short,
            time(created.parse().unwrap_or(0)),
            human_size(size.parse().unwrap_or(0.0)),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}
