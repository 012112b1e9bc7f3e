//! `.dockerignore`: which paths of a build context are left out, by Docker's rules
//! (<https://docs.docker.com/build/concepts/context/#dockerignore-files>; moby/patternmatcher
//! and its `ignorefile` reader). Both ends use it, so it lives with the wire contracts:
//! `hyperctl build` leaves excluded files out of the context it sends, and hyperd applies the
//! same rules to a context sent by any other client.
//!
//! Also here, because COPY/ADD sources and `.dockerignore` share their glob grammar: Go's
//! `filepath.Match` ([`path_match`]) and `filepath.Clean` ([`clean`]), on `/`-separated paths.

/// A pattern that is not a valid glob (an unclosed `[`, a bad range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("syntax error in pattern {0:?}")]
    BadPattern(String),
    #[error(".dockerignore line {line}: illegal exclusion pattern \"!\"")]
    LoneExclamation { line: usize },
    #[error(".dockerignore line {line}: syntax error in pattern {pattern:?}")]
    BadIgnorePattern { line: usize, pattern: String },
}

/// The parsed rules of one `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without the `!`.
    text: String,
    exclusion: bool,
    tokens: Vec<Token>,
}

impl DockerIgnore {
    /// Reads `.dockerignore` text: one pattern a line, a UTF-8 BOM skipped, lines starting with
    /// `#` ignored, blank lines ignored, surrounding whitespace trimmed, `!` making an exception,
    /// each pattern cleaned as a path (`./a/../b` is `b`) with a leading `/` dropped.
    /// Malformed patterns are dropped; use [`DockerIgnore::try_parse`] to refuse them.
    pub fn parse(text: &str) -> DockerIgnore {
        let (ignore, _) = Self::read(text);
        ignore
    }

    /// As [`DockerIgnore::parse`], but a malformed pattern (a lone `!`, an unclosed `[`) is
    /// an error naming its line, as Docker refuses such a file.
    pub fn try_parse(text: &str) -> Result<DockerIgnore, PatternError> {
        match Self::read(text) {
            (ignore, None) => Ok(ignore),
            (_, Some(e)) => Err(e),
        }
    }

    fn read(text: &str) -> (DockerIgnore, Option<PatternError>) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        let mut first_error = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    first_error.get_or_insert(PatternError::LoneExclamation { line: line_no });
                    continue;
                }
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            match compile(&cleaned, Dialect::Ignore) {
                Ok(tokens) => patterns.push(Pattern {
                    text: cleaned,
                    exclusion,
                    tokens,
                }),
                Err(_) => {
                    first_error.get_or_insert(PatternError::BadIgnorePattern {
                        line: line_no,
                        pattern: p.to_string(),
                    });
                }
            }
        }
        (DockerIgnore { patterns }, first_error)
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context root, `/`-separated; cleaned first) is left out:
    /// the last pattern that matches it or one of its parent directories decides, an exception
    /// (`!`) bringing it back. So an excluded directory excludes everything in it, unless a
    /// later exception names something inside.
    pub fn is_excluded(&self, path: &str) -> bool {
        let file = clean(path.trim_start_matches('/'));
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An exclusion only matters once something matched, an inclusion only before.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = matches(&p.tokens, &file, Dialect::Ignore);
            if !hit {
                for i in 1..=parents.len() {
                    if matches(&p.tokens, &parents[..i].join("/"), Dialect::Ignore) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether an excluded directory `dir` must still be walked because an exception pattern
    /// could bring back something inside it (Docker's client checks the exception's text for
    /// the `dir/` prefix, so `!**/keep` does not reach into excluded directories).
    pub fn may_include_under(&self, dir: &str) -> bool {
        let dir_slash = format!("{}/", clean(dir.trim_start_matches('/')));
        self.patterns
            .iter()
            .any(|p| p.exclusion && format!("{}/", p.text).starts_with(&dir_slash))
    }
}

/// Go's `filepath.Match` on `/`-separated names: `*` any run of non-`/` characters, `?` one
/// non-`/` character, `[a-z]`/`[^a-z]` a class (never `/`), `\` escaping the next character.
/// The whole name must match. Errors: [`PatternError::BadPattern`] for a malformed pattern.
pub fn path_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let tokens = compile(pattern, Dialect::Go)
        .map_err(|()| PatternError::BadPattern(pattern.to_string()))?;
    Ok(matches(&tokens, name, Dialect::Go))
}

/// Whether `pattern` has any of Go's glob characters (`*`, `?`, `[`), as Docker checks
/// before treating a COPY source as a glob.
pub fn has_wildcards(pattern: &str) -> bool {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Go's `path.Clean`: `.` and empty components removed, `..` resolved lexically (kept at the
/// start of a relative path, dropped at the root), no trailing `/`; `""` is `"."`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// patternmatcher's regexp translation: `**` spans directories, a class may match `/`.
    Ignore,
    /// Go's `filepath.Match`.
    Go,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`: any run of non-`/`.
    Star,
    /// `?`: one non-`/`.
    Any,
    /// `**/` (or `**` before more pattern): any run of whole directories, or none.
    Dirs,
    /// `**` at the end: anything.
    Rest,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

fn compile(pattern: &str, dialect: Dialect) -> Result<Vec<Token>, ()> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if dialect == Dialect::Ignore && chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i == chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
            }
            '*' => {
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
            }
            '?' => tokens.push(Token::Any),
            '\\' => match chars.get(i) {
                Some(&n) => {
                    tokens.push(Token::Char(n));
                    i += 1;
                }
                // Go's Match refuses a trailing `\`; patternmatcher keeps it literally.
                None if dialect == Dialect::Go => return Err(()),
                None => tokens.push(Token::Char('\\')),
            },
            '[' => {
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&lo) = chars.get(i) else {
                        return Err(());
                    };
                    i += 1;
                    if lo == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if lo == '\\' {
                        let e = *chars.get(i).ok_or(())?;
                        i += 1;
                        e
                    } else {
                        lo
                    };
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                        i += 1;
                        hi = chars[i];
                        i += 1;
                        if hi == '\\' {
                            hi = *chars.get(i).ok_or(())?;
                            i += 1;
                        }
                        // A reversed range is a regexp error; Go's Match just never matches it.
                        if hi < lo && dialect == Dialect::Ignore {
                            return Err(());
                        }
                    }
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Char(c)),
        }
    }
    Ok(tokens)
}

fn matches(tokens: &[Token], name: &str, dialect: Dialect) -> bool {
    let chars: Vec<char> = name.chars().collect();
    // memo[t * (n + 1) + c]: None unknown, Some(result).
    let n = chars.len();
    let mut memo = vec![None; (tokens.len() + 1) * (n + 1)];
    match_at(tokens, &chars, 0, 0, dialect, &mut memo)
}

fn match_at(
    tokens: &[Token],
    chars: &[char],
    t: usize,
    c: usize,
    dialect: Dialect,
    memo: &mut Vec<Option<bool>>,
) -> bool {
    let key = t * (chars.len() + 1) + c;
    if let Some(r) = memo[key] {
        return r;
    }
    let r = match tokens.get(t) {
        None => c == chars.len(),
        Some(Token::Char(x)) => {
            chars.get(c) == Some(x) && match_at(tokens, chars, t + 1, c + 1, dialect, memo)
        }
        Some(Token::Any) => {
            chars.get(c).is_some_and(|&x| x != '/')
                && match_at(tokens, chars, t + 1, c + 1, dialect, memo)
        }
        Some(Token::Class { negated, ranges }) => {
            chars.get(c).is_some_and(|&x| {
                let inside = ranges.iter().any(|&(lo, hi)| lo <= x && x <= hi);
                inside != *negated && (dialect == Dialect::Ignore || x != '/')
            }) && match_at(tokens, chars, t + 1, c + 1, dialect, memo)
        }
        Some(Token::Star) => {
            match_at(tokens, chars, t + 1, c, dialect, memo)
                || (chars.get(c).is_some_and(|&x| x != '/')
                    && match_at(tokens, chars, t, c + 1, dialect, memo))
        }
        // Regexp `.` does not match a newline.
        Some(Token::Rest) => !chars[c..].contains(&'\n'),
        Some(Token::Dirs) => {
            match_at(tokens, chars, t + 1, c, dialect, memo)
                || (c..chars.len()).take_while(|&k| chars[k] != '\n').any(|k| {
                    chars[k] == '/' && match_at(tokens, chars, t + 1, k + 1, dialect, memo)
                })
        }
    };
    memo[key] = Some(r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_clean_follows_path_clean() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./a", "a"),
            ("a/./b/", "a/b"),
            ("a//b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("//a/b/../", "/a"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn path_match_follows_go_filepath_match() {
        for (pattern, name, want) in [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a?b", "a/b", false),
            ("a[^a]b", "a/b", false),
            ("*.txt", "dir/a.txt", false),
            ("dir/*.txt", "dir/a.txt", true),
        ] {
            assert_eq!(
                path_match(pattern, name),
                Ok(want),
                "Match({pattern:?}, {name:?})"
            );
        }
        for bad in ["[", "[^", "a[", "[a-", "ab\\"] {
            assert!(path_match(bad, "x").is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn wildcards_are_spotted_unless_escaped() {
        assert!(has_wildcards("*.go"));
        assert!(has_wildcards("a?"));
        assert!(has_wildcards("[ab]"));
        assert!(!has_wildcards("plain/file"));
        assert!(!has_wildcards("a\\*b"));
    }

    /// Each case: the .dockerignore text, then paths and whether each is excluded.
    #[test]
    fn dockerignore_rules() {
        let cases: &[(&str, &[(&str, bool)])] = &[
            ("", &[("a", false), ("Dockerfile", false)]),
            ("# comment\n\n   \n", &[("# comment", false)]),
            // A line whose first character is not '#' is a pattern even if '#' follows spaces.
            (" # x", &[("# x", true)]),
            (
                "*.md\n!README.md",
                &[("a.md", true), ("README.md", false), ("docs/a.md", false)],
            ),
            // Exceptions: the last matching pattern wins.
            (
                "*.md\n!README*.md\nREADME-secret.md",
                &[
                    ("x.md", true),
                    ("README.md", false),
                    ("README-secret.md", true),
                ],
            ),
            // A directory excludes its contents; a later exception brings one back.
            (
                "build\n!build/keep.txt",
                &[
                    ("build", true),
                    ("build/a/b.o", true),
                    ("build/keep.txt", false),
                    ("builder", false),
                ],
            ),
            // Leading '/' and './' are the context root; patterns are cleaned.
            (
                "/secret\n./tmp/\nlogs/../cache",
                &[
                    ("secret", true),
                    ("a/secret", false),
                    ("tmp/x", true),
                    ("cache", true),
                    ("logs", false),
                ],
            ),
            // '*' and '?' stay within one path component; '**' spans any number.
            (
                "*/temp*\n?.txt",
                &[
                    ("somedir/temporary.txt", true),
                    ("somedir/sub/temp", false),
                    ("temp", false),
                    ("a.txt", true),
                    ("ab.txt", false),
                    ("d/a.txt", false),
                ],
            ),
            (
                "**/*.go",
                &[("main.go", true), ("a/b/c.go", true), ("a/b/c.golf", false)],
            ),
            (
                "a/**/z",
                &[
                    ("a/z", true),
                    ("a/b/z", true),
                    ("a/b/c/z", true),
                    ("a/bz", false),
                ],
            ),
            (
                "node_modules/**",
                &[("node_modules/x/y", true), ("node_modules", false)],
            ),
            ("**", &[("anything/at/all", true), ("x", true)]),
            (
                "[a-c]*.log\n!b*.log",
                &[("a1.log", true), ("b1.log", false), ("d1.log", false)],
            ),
            // Only the escaped '*' is literal.
            ("a\\*b", &[("a*b", true), ("axb", false)]),
            // Regexp-special characters are literal.
            ("a.b+(c)", &[("a.b+(c)", true), ("axb+(c)", false)]),
            // A BOM at the start is skipped; CRLF line ends work.
            ("\u{feff}x\r\ny\r\n", &[("x", true), ("y", true)]),
            // An exception alone brings nothing back that was never excluded.
            ("!a", &[("a", false)]),
        ];
        for (text, paths) in cases {
            let ignore = DockerIgnore::try_parse(text).unwrap();
            for (path, want) in *paths {
                assert_eq!(
                    ignore.is_excluded(path),
                    *want,
                    ".dockerignore {text:?}: {path:?}"
                );
            }
        }
    }

    #[test]
    fn malformed_patterns_are_refused_by_try_parse_and_dropped_by_parse() {
        assert_eq!(
            DockerIgnore::try_parse("a\n!\n").unwrap_err(),
            PatternError::LoneExclamation { line: 2 }
        );
        assert_eq!(
            DockerIgnore::try_parse("ok\n[unclosed\n")
                .unwrap_err()
                .to_string(),
            ".dockerignore line 2: syntax error in pattern \"[unclosed\""
        );
        let lenient = DockerIgnore::parse("[unclosed\nkept");
        assert!(lenient.is_excluded("kept"));
        assert!(!lenient.is_excluded("[unclosed"));
    }

    #[test]
    fn excluded_directories_are_walked_only_when_an_exception_names_something_inside() {
        let ignore = DockerIgnore::parse("docs\n!docs/README.md\nbuild\n!**/keep");
        assert!(ignore.may_include_under("docs"));
        assert!(!ignore.may_include_under("build"));
        assert!(!DockerIgnore::parse("x").may_include_under("x"));
    }
}
