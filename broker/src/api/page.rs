//! The one way every list is cut into pages: items in the list's own order, `limit` of them
//! after the item whose key is the `after` cursor; `next` is the key of a page's last item when
//! more follow.

use api_model::{DEFAULT_LIMIT, MAX_LIMIT, Page, Paging};

use super::ApiError;

/// The page of `items` (already filtered and in order) that `paging` asks for; `key` is what a
/// cursor names an item by.
pub fn page<T>(
    items: Vec<T>,
    paging: &Paging,
    key: impl Fn(&T) -> &str,
) -> Result<Page<T>, ApiError> {
    let limit = paging.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit {limit} is out of range; ask for 1 to {MAX_LIMIT} items"
        )));
    }
    let start = match &paging.after {
        None => 0,
        Some(cursor) => match items.iter().position(|item| key(item) == cursor.as_str()) {
            Some(at) => at + 1,
            None => {
                return Err(ApiError::invalid(format!(
                    "cursor {cursor:?} names nothing in this list any more; start again without `after`"
                )));
            }
        },
    };
    let more = items.len() > start + limit;
    let items: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = if more {
        items.last().map(|last| key(last).to_string())
    } else {
        None
    };
    Ok(Page { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paging(limit: Option<usize>, after: Option<&str>) -> Paging {
        Paging {
            limit,
            after: after.map(str::to_string),
        }
    }

    fn walk(items: &[&str], limit: usize) -> Vec<Vec<String>> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let p = page(items.clone(), &paging(Some(limit), after.as_deref()), |s| s).unwrap();
            pages.push(p.items);
            match p.next {
                Some(next) => after = Some(next),
                None => return pages,
            }
        }
    }

    #[test]
    fn pages_cover_the_list_once_in_order() {
        assert_eq!(
            walk(&["a", "b", "c", "d", "e"], 2),
            [vec!["a", "b"], vec!["c", "d"], vec!["e"]]
        );
        assert_eq!(walk(&["a", "b"], 2), [vec!["a", "b"]]);
        assert_eq!(walk(&[], 3), [Vec::<String>::new()]);
    }

    #[test]
    fn bad_limits_and_unknown_cursors_are_refused() {
        let items = || vec!["a".to_string()];
        for limit in [0, MAX_LIMIT + 1] {
            let refused = page(items(), &paging(Some(limit), None), |s| s).unwrap_err();
            assert_eq!(refused.code, api_model::ErrorCode::InvalidRequest);
        }
        let refused = page(items(), &paging(None, Some("zz")), |s| s).unwrap_err();
        assert!(
            refused.message.contains("start again"),
            "{}",
            refused.message
        );
    }
}
