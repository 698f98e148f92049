//! File-name globs for `findfile`: `*` (any run), `?` (one character), `[abc]`, `[a-z]`, `[!x]` or
//! `[^x]` (classes) and `\` to match the next character literally.

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    nocase: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `pattern`; an unclosed `[` is an error so the analyst learns about the typo.
    pub fn new(pattern: &str, nocase: bool) -> Result<Self, String> {
        let fold = |c: char| if nocase { lower(c) } else { c };
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => {
                    // Runs of stars mean the same as one; collapsing keeps matching linear.
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                '?' => Token::Any,
                '\\' => Token::Char(fold(chars.next().unwrap_or('\\'))),
                '[' => {
                    let negated = matches!(chars.peek(), Some('!' | '^'));
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(c) = chars.next() else {
                            return Err(format!("'[' without a closing ']' in '{pattern}'"));
                        };
                        // A ']' first in the class is a member, as in shells.
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = fold(c);
                        if chars.peek() == Some(&'-') {
                            let mut ahead = chars.clone();
                            ahead.next();
                            if let Some(&hi) = ahead.peek().filter(|h| **h != ']') {
                                chars.next();
                                chars.next();
                                ranges.push((lo, fold(hi)));
                                continue;
                            }
                        }
                        ranges.push((lo, lo));
                    }
                    Token::Class { negated, ranges }
                }
                other => Token::Char(fold(other)),
            });
        }
        Ok(Self { tokens, nocase })
    }

    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = if self.nocase {
            name.chars().map(lower).collect()
        } else {
            name.chars().collect()
        };
        // Classic wildcard matching with one backtrack point: the last star seen.
        let (mut t, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    star = Some((t, n));
                    t += 1;
                }
                Some(tok) if tok.accepts(name[n]) => {
                    t += 1;
                    n += 1;
                }
                _ => match star {
                    Some((st, sn)) => {
                        t = st + 1;
                        n = sn + 1;
                        star = Some((st, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[t..].iter().all(|tok| *tok == Token::Star)
    }
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

#[cfg(test)]
mod tests;
