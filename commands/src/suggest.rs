//! "Did you mean": the closest known name to a mistyped one.

/// The candidate nearest to `typed` by edit distance, if it is near enough to be a typo.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    let limit = (typed.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (distance(&typed, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where a swap of two neighbours counts as one edit (optimal string alignment),
/// since swapped letters are the commonest typo.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_command_and_strangers_do_not() {
        let names = ["processes", "persistence", "dir", "findfile", "fileinfo"];
        assert_eq!(closest("proceses", names), Some("processes"));
        assert_eq!(closest("fileinf", names), Some("fileinfo"));
        assert_eq!(closest("DIR", names), Some("dir"));
        assert_eq!(closest("rm", names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("mxa", "max"), 1);
    }
}
