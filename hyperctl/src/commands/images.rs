//! `hyperctl images`: the daemon's images (`GET /images/get`, its `images` list) as Docker's
//! table: one row per repository tag (and per digest of a repository without a tag), untagged
//! images as `<none>`.

use anyhow::Result;

use hyper_proto::rest::{ImageSummary, ImagesResponse};

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
    /// Show the repository digests.
    #[arg(long)]
    pub digests: bool,
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    let all = if args.all { "yes" } else { "no" };
    let list: ImagesResponse = client.get(&format!("/images/get?all={all}")).await?;
    print!("{}", table(&rows(&list.images, args.quiet, args.digests)));
    Ok(0)
}

const NONE: &str = "<none>";

/// The table's rows, header first (none with `quiet`, which lists each id once).
fn rows(images: &[ImageSummary], quiet: bool, digests: bool) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    if quiet {
        for image in images {
            let id = short_id(&image.id);
            if !rows.iter().any(|r| r[0] == id) {
                rows.push(vec![id]);
            }
        }
        return rows;
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    rows.push(header.into_iter().map(String::from).collect());
    for image in images {
        let tags: Vec<(&str, &str)> = image.repo_tags.iter().map(|t| split_tag(t)).collect();
        let repo_digests: Vec<(&str, &str)> = image
            .repo_digests
            .iter()
            .map(|d| d.split_once('@').unwrap_or((d.as_str(), NONE)))
            .collect();
        let digest_of = |repo: &str| {
            repo_digests
                .iter()
                .find(|(r, _)| *r == repo)
                .map_or(NONE, |(_, d)| d)
        };
        let mut names: Vec<(&str, &str, &str)> = tags
            .iter()
            .map(|(repo, tag)| (*repo, *tag, digest_of(repo)))
            .collect();
        for (repo, digest) in &repo_digests {
            if !tags.iter().any(|(r, _)| r == repo) {
                names.push((repo, NONE, digest));
            }
        }
        if names.is_empty() {
            names.push((NONE, NONE, NONE));
        }
        for (repo, tag, digest) in names {
            let mut row = vec![repo.to_string(), tag.to_string()];
            if digests {
                row.push(digest.to_string());
            }
            row.extend([
                short_id(&image.id),
                time(image.created),
                human_size(image.size as f64),
            ]);
            rows.push(row);
        }
    }
    rows
}

/// `repo:tag` → (`repo`, `tag`); a `:` before the last `/` is a registry port.
fn split_tag(repo_tag: &str) -> (&str, &str) {
    match repo_tag.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (repo_tag, NONE),
    }
}

/// The first 12 hex digits of `sha256:<hex>`.
fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tags: &[&str], digests: &[&str]) -> ImageSummary {
        ImageSummary {
            id: format!("sha256:{id}"),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            created: 1_700_000_000,
            size: 4_261_550,
        }
    }

    fn list() -> Vec<ImageSummary> {
        vec![
            image(
                "aaaaaaaaaaaa1111",
                &["busybox:latest", "127.0.0.1:5000/bb:1"],
                &["busybox@sha256:d1", "127.0.0.1:5000/other@sha256:d2"],
            ),
            image("bbbbbbbbbbbb2222", &[], &[]),
        ]
    }

    #[test]
    fn one_row_per_tag_with_its_repository_digest() {
        let t = table(&rows(&list(), false, true));
        assert_eq!(
            t,
            "REPOSITORY             TAG                 DIGEST              IMAGE ID            CREATED               SIZE\n\
             busybox                latest              sha256:d1           aaaaaaaaaaaa        2023-11-14 22:13:20   4.262 MB\n\
             127.0.0.1:5000/bb      1                   <none>              aaaaaaaaaaaa        2023-11-14 22:13:20   4.262 MB\n\
             127.0.0.1:5000/other   <none>              sha256:d2           aaaaaaaaaaaa        2023-11-14 22:13:20   4.262 MB\n\
             <none>                 <none>              <none>              bbbbbbbbbbbb        2023-11-14 22:13:20   4.262 MB\n"
        );
    }

    #[test]
    fn digests_column_only_when_asked() {
        let r = rows(&list(), false, false);
        assert_eq!(r[0], ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
        assert_eq!(r[1][..3], ["busybox", "latest", "aaaaaaaaaaaa"]);
    }

    #[test]
    fn quiet_lists_each_id_once() {
        assert_eq!(
            rows(&list(), true, false),
            [
                vec!["aaaaaaaaaaaa".to_string()],
                vec!["bbbbbbbbbbbb".to_string()]
            ]
        );
    }
}
