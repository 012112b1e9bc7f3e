//! `hyperctl history [-q] [--no-trunc] IMAGE`: `GET /image/history` as Docker's table.

use anyhow::Result;
use hyper_proto::rest::ImageHistoryItem;

use crate::client::{Client, enc};
use crate::table::{human_size, table, time};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print only the image id (of the rows that have one).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not cut ids and commands short.
    #[arg(long)]
    pub no_trunc: bool,
    /// The image: NAME[:TAG] or an id.
    pub image: String,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let rows: Vec<ImageHistoryItem> = client
        .get(&format!("/image/history?imageName={}", enc(&args.image)))
        .await?;
    print!("{}", table(&render(&rows, args.quiet, args.no_trunc)));
    Ok(0)
}

fn render(rows: &[ImageHistoryItem], quiet: bool, no_trunc: bool) -> Vec<Vec<String>> {
    let id = |id: &str| {
        if no_trunc || id == "<missing>" {
            id.to_string()
        } else {
            let hex = id.strip_prefix("sha256:").unwrap_or(id);
            hex[..hex.len().min(12)].to_string()
        }
    };
    if quiet {
        return rows.iter().map(|r| vec![id(&r.id)]).collect();
    }
    let mut out = vec![
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows {
        let by = if no_trunc || r.created_by.chars().count() <= 45 {
            r.created_by.clone()
        } else {
            format!("{}…", r.created_by.chars().take(44).collect::<String>())
        };
        out.push(vec![
            id(&r.id),
            time(r.created),
            by,
            human_size(r.size as f64),
            r.comment.clone(),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_row_has_the_id_and_long_commands_are_cut() {
        let rows = vec![
            ImageHistoryItem {
                id: format!("sha256:{}", "a".repeat(64)),
                created: 0,
                created_by: "x".repeat(60),
                size: 2048,
                ..Default::default()
            },
            ImageHistoryItem {
                id: "<missing>".into(),
                ..Default::default()
            },
        ];
        let t = render(&rows, false, false);
        assert_eq!(t[1][0], "a".repeat(12));
        assert_eq!(t[1][2].chars().count(), 45);
        assert_eq!(t[2][0], "<missing>");
        assert_eq!(render(&rows, true, false).len(), 2);
    }
}
