//! Docker's shell-word processing of instruction arguments (moby/buildkit
//! `frontend/dockerfile/shell/lex.go`, the rules of
//! <https://docs.docker.com/reference/dockerfile/#environment-replacement>): single quotes keep
//! everything literally; double quotes keep everything but `$` and the escape character (which
//! escapes only `"`, `$` and itself there); outside quotes the escape character makes the next
//! character literal; `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
//! `${VAR+word}`, `${VAR:?msg}` and `${VAR?msg}` are substituted (unset is empty). Nothing else
//! of the shell (no globbing, no command substitution) happens.
//!
//! The executor applies these where Docker does: ADD, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR. RUN, CMD and ENTRYPOINT are left to the shell.

use std::iter::Peekable;
use std::str::Chars;

use crate::error::Kind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("{word:?}: unexpected end of statement while looking for matching {quote}")]
    UnterminatedQuote { word: String, quote: char },
    #[error("{word:?}: syntax error: missing '}}'")]
    MissingBrace { word: String },
    #[error("{word:?}: syntax error: bad substitution")]
    BadSubstitution { word: String },
    #[error("{word:?}: unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier { word: String, modifier: char },
    /// `${VAR?message}` with `VAR` unset (or `${VAR:?message}` with it empty).
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

impl WordError {
    /// Always the client's fault (the Dockerfile's or the build args').
    pub fn kind(&self) -> Kind {
        Kind::InvalidInput
    }
}

/// One word: quotes removed, escapes applied, variables substituted from `lookup` (unset →
/// `""`). Whitespace is kept as it is (`ENV a b c` gives `a` the value `b c`).
///
/// Errors: [`WordError`] for an unterminated quote or `${`, a bad substitution, or a
/// `${VAR?msg}` whose variable is unset.
pub fn expand_word(
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, WordError> {
    let mut lexer = Lexer::new(raw, lookup, escape);
    let (word, _) = lexer.process(None)?;
    Ok(word)
}

/// Whitespace-separated words (quoted whitespace kept), each processed as [`expand_word`]
/// does. An unquoted variable's value is split on whitespace too, as Docker does
/// (`EXPOSE $PORTS`).
pub fn expand_words(
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, WordError> {
    let mut lexer = Lexer::new(raw, lookup, escape);
    let (_, words) = lexer.process(None)?;
    Ok(words.finish())
}

/// Words being collected: whitespace ends a word unless it came from quotes or an escape.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'a> {
    raw: &'a str,
    chars: Peekable<Chars<'a>>,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    escape: char,
}

impl<'a> Lexer<'a> {
    fn new(raw: &'a str, lookup: &'a dyn Fn(&str) -> Option<String>, escape: char) -> Self {
        Lexer {
            raw,
            chars: raw.chars().peekable(),
            lookup,
            escape,
        }
    }

    /// Processes up to `stop` (consumed) or the end: the whole text and its words.
    fn process(&mut self, stop: Option<char>) -> Result<(String, Words), WordError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(&c) = self.chars.peek() {
            if Some(c) == stop {
                self.chars.next();
                return Ok((result, words));
            }
            match c {
                '\'' => {
                    let s = self.single_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.double_quoted()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                _ => {
                    self.chars.next();
                    if c == self.escape {
                        // The escape makes the next character literal; at the end it is dropped.
                        let Some(next) = self.chars.next() else {
                            break;
                        };
                        words.add_raw_char(next);
                        result.push(next);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        match stop {
            Some('}') => Err(WordError::MissingBrace {
                word: self.raw.to_string(),
            }),
            _ => Ok((result, words)),
        }
    }

    fn single_quoted(&mut self) -> Result<String, WordError> {
        self.chars.next();
        let mut s = String::new();
        loop {
            match self.chars.next() {
                None => {
                    return Err(WordError::UnterminatedQuote {
                        word: self.raw.to_string(),
                        quote: '\'',
                    });
                }
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, WordError> {
        self.chars.next();
        let mut s = String::new();
        loop {
            match self.chars.peek().copied() {
                None => {
                    return Err(WordError::UnterminatedQuote {
                        word: self.raw.to_string(),
                        quote: '"',
                    });
                }
                Some('"') => {
                    self.chars.next();
                    return Ok(s);
                }
                Some('$') => s.push_str(&self.dollar()?),
                Some(c) => {
                    self.chars.next();
                    if c == self.escape {
                        match self.chars.peek().copied() {
                            // An escape at the very end is dropped.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.chars.next();
                                s.push(n);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    s.push(c);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, WordError> {
        self.chars.next();
        if self.chars.peek() != Some(&'{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok((self.lookup)(&name).unwrap_or_default());
        }
        self.chars.next();
        match self.chars.peek() {
            None => {
                return Err(WordError::MissingBrace {
                    word: self.raw.to_string(),
                });
            }
            Some('{' | '}' | ':') => {
                return Err(WordError::BadSubstitution {
                    word: self.raw.to_string(),
                });
            }
            Some(_) => {}
        }
        let name = self.name();
        let value = (self.lookup)(&name);
        match self.chars.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            None => Err(WordError::MissingBrace {
                word: self.raw.to_string(),
            }),
            Some(c) => {
                // `:` makes the test "set and not empty" instead of "set".
                let (colon, modifier) = if c == ':' {
                    match self.chars.next() {
                        Some(m) => (true, m),
                        None => {
                            return Err(WordError::MissingBrace {
                                word: self.raw.to_string(),
                            });
                        }
                    }
                } else {
                    (false, c)
                };
                if !matches!(modifier, '-' | '+' | '?') {
                    return Err(WordError::UnsupportedModifier {
                        word: self.raw.to_string(),
                        modifier,
                    });
                }
                let (word, _) = self.process(Some('}'))?;
                let set = match &value {
                    Some(v) => !(colon && v.is_empty()),
                    None => false,
                };
                match modifier {
                    '-' if set => Ok(value.unwrap_or_default()),
                    '-' => Ok(word),
                    '+' if set => Ok(word),
                    '+' => Ok(String::new()),
                    _ if set => Ok(value.unwrap_or_default()),
                    _ => Err(WordError::Required {
                        message: if word.is_empty() {
                            "is not allowed to be unset".into()
                        } else {
                            word
                        },
                        name,
                    }),
                }
            }
        }
    }

    /// A variable name: letters, digits and `_`; or all digits; or one special parameter.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.chars.peek().copied() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(&d) = self.chars.peek().filter(|d| d.is_ascii_digit()) {
                    name.push(d);
                    self.chars.next();
                }
                return name;
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.chars.next();
                return c.to_string();
            }
            _ => {}
        }
        while let Some(&c) = self
            .chars
            .peek()
            .filter(|c| c.is_alphanumeric() || **c == '_')
        {
            name.push(c);
            self.chars.next();
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "LIST" => Some("x  y".into()),
            "PATH" => Some("/usr/bin".into()),
            _ => None,
        }
    }

    /// Each case: the raw text, then what `expand_word` and `expand_words` give.
    #[test]
    fn words_expand_as_docker_expands_them() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("hello", "hello", &["hello"]),
            ("$A", "a", &["a"]),
            ("${A}b", "ab", &["ab"]),
            ("$Ab", "", &[]),
            ("${UNSET}", "", &[]),
            ("x$UNSET-y", "x-y", &["x-y"]),
            ("'$A'", "$A", &["$A"]),
            ("\"$A\"", "a", &["a"]),
            ("\"a\\\"b\"", "a\"b", &["a\"b"]),
            ("\"a\\b\"", "a\\b", &["a\\b"]),
            ("\"\\$A\"", "$A", &["$A"]),
            ("'a\\b'", "a\\b", &["a\\b"]),
            ("\\$A", "$A", &["$A"]),
            ("a\\ b c", "a b c", &["a b", "c"]),
            ("a \"b  c\" d", "a b  c d", &["a", "b  c", "d"]),
            ("trailing\\", "trailing", &["trailing"]),
            ("$", "$", &["$"]),
            ("a$", "a$", &["a$"]),
            ("$1x", "x", &["x"]),
            ("${UNSET:-def}", "def", &["def"]),
            ("${EMPTY:-def}", "def", &["def"]),
            ("${EMPTY-def}", "", &[]),
            ("${UNSET-def}", "def", &["def"]),
            ("${A:-def}", "a", &["a"]),
            ("${A:+alt}", "alt", &["alt"]),
            ("${EMPTY:+alt}", "", &[]),
            ("${EMPTY+alt}", "alt", &["alt"]),
            ("${UNSET:+alt}", "", &[]),
            ("${UNSET:-\"a b\"}", "a b", &["a", "b"]),
            ("${UNSET:-$A}", "a", &["a"]),
            ("${PATH}:/bin", "/usr/bin:/bin", &["/usr/bin:/bin"]),
            // An unquoted variable's value is split into words; a quoted one is not.
            ("$LIST", "x  y", &["x", "y"]),
            ("\"$LIST\"", "x  y", &["x  y"]),
            ("\"\" a", " a", &["", "a"]),
        ];
        for (raw, word, words) in cases {
            assert_eq!(
                expand_word(raw, &env, '\\').as_deref(),
                Ok(*word),
                "expand_word({raw:?})"
            );
            assert_eq!(
                expand_words(raw, &env, '\\').unwrap(),
                words.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                "expand_words({raw:?})"
            );
        }
    }

    #[test]
    fn a_backtick_escape_leaves_backslashes_alone() {
        assert_eq!(expand_word("C:\\dir\\$A", &env, '`').unwrap(), "C:\\dir\\a");
        assert_eq!(expand_word("`$A", &env, '`').unwrap(), "$A");
        assert_eq!(expand_word("\"`\"\"", &env, '`').unwrap(), "\"");
    }

    #[test]
    fn malformed_words_are_typed_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "'abc",
                "\"'abc\": unexpected end of statement while looking for matching '",
            ),
            (
                "\"abc",
                "\"\\\"abc\": unexpected end of statement while looking for matching \"",
            ),
            ("${A", "\"${A\": syntax error: missing '}'"),
            ("${A:-x", "\"${A:-x\": syntax error: missing '}'"),
            ("${", "\"${\": syntax error: missing '}'"),
            ("${}", "\"${}\": syntax error: bad substitution"),
            ("${:a}", "\"${:a}\": syntax error: bad substitution"),
            (
                "${A:=x}",
                "\"${A:=x}\": unsupported modifier (=) in substitution",
            ),
            ("${UNSET?need it}", "UNSET: need it"),
            ("${EMPTY:?}", "EMPTY: is not allowed to be unset"),
        ];
        for (raw, want) in cases {
            assert_eq!(
                expand_word(raw, &env, '\\').unwrap_err().to_string(),
                *want,
                "{raw:?}"
            );
        }
        assert_eq!(expand_word("${EMPTY?x}", &env, '\\').unwrap(), "");
    }
}

/// Any text expands to words or a typed error, never a panic; text with no quote, escape or
/// `$` is left alone. `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn env(name: &str) -> Option<String> {
        name.len()
            .is_multiple_of(2)
            .then(|| format!("<{name} 'v\" $x>"))
    }

    proptest! {
        #[test]
        fn any_text(raw in "[a-zA-Z0-9_ $'\"`\\\\{}:+?=#*@-]{0,40}|\\PC{0,40}", backtick in any::<bool>()) {
            let escape = if backtick { '`' } else { '\\' };
            let word = expand_word(&raw, &env, escape);
            let words = expand_words(&raw, &env, escape);
            // Both read the text the same way, so both fail or neither does.
            prop_assert_eq!(word.is_ok(), words.is_ok(), "{:?}", raw);
            if let Ok(words) = words {
                prop_assert!(words.len() <= raw.len() * 3 + 1);
            }
        }

        #[test]
        fn plain_text_is_left_alone(raw in "[a-zA-Z0-9_./:@ -]{0,40}") {
            prop_assert_eq!(expand_word(&raw, &env, '\\').unwrap(), raw.clone());
            let split: Vec<String> = raw.split_whitespace().map(String::from).collect();
            prop_assert_eq!(expand_words(&raw, &env, '\\').unwrap(), split);
        }
    }
}
