//! Following paginated listings: GitHub's `Link: <…>; rel="next"` header and GitLab's
//! `X-Next-Page` header.

use reqwest::header::HeaderMap;

/// The `rel="next"` URL of an RFC 8288 `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let url = pieces.next()?.trim();
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| url.trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

/// GitLab's `X-Next-Page` (empty or absent on the last page).
pub fn next_page(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-next-page")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/x?page=3")
        );
        headers.insert("x-next-page", "".parse().unwrap());
        assert_eq!(next_page(&headers), None);
    }
}
