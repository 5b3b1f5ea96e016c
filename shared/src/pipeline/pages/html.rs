//! Server-rendered HTML: escaping and the one layout every page uses. No template engine: pages are
//! small, and `escape` is applied at every interpolation of untrusted text.

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24;background:#fafafa}
header{display:flex;gap:1rem;align-items:center;border-bottom:1px solid #ddd;padding-bottom:.5rem;margin-bottom:1.5rem}
header strong{flex:1}
nav a{margin-right:.8rem}
form{margin:1rem 0}
label{display:block;margin:.6rem 0 .2rem}
input,textarea{font:inherit;padding:.4rem;width:100%;box-sizing:border-box}
button{font:inherit;padding:.45rem 1rem;margin-top:.8rem;cursor:pointer}
header form{margin:0}
header button{margin:0}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.6rem;border-radius:4px}
.notice{background:#e8f4fd;border:1px solid #a0c8e0;padding:.6rem;border-radius:4px}
.inline{display:inline;margin:0}
.inline button{margin:0;padding:.15rem .5rem}
select{font:inherit;padding:.4rem}
input[type=checkbox]{width:auto}
.secret{font-family:ui-monospace,monospace;background:#fff8d6;border:1px solid #e0d090;padding:.6rem;word-break:break-all}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;font-size:.9rem}
";

/// Who is logged in, for the header: their name and this session's CSRF token (the logout forms).
#[derive(Debug)]
pub struct Viewer<'a> {
    pub username: &'a str,
    pub csrf: &'a str,
}

/// A whole page. `body` is trusted HTML built by the caller with [`escape`]d interpolations.
pub fn layout(title: &str, nonce: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let header = match viewer {
        Some(viewer) => format!(
            r#"<header><strong>Kavach</strong><nav><a href="/dashboard">Dashboard</a><a href="/apikey">API key</a><a href="/auth/sessions">Sessions</a><a href="/security">Security</a><a href="/logs">Logs</a></nav>
<span id="whoami">{user}</span>
<form method="post" action="/auth/logout"><input type="hidden" name="csrf_token" value="{csrf}"><button id="logout" type="submit">Log out</button></form></header>"#,
            user = escape(viewer.username),
            csrf = escape(viewer.csrf),
        ),
        None => "<header><strong>Kavach</strong></header>".to_owned(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Kavach</title><style nonce="{nonce}">{STYLE}</style></head>
<body>{header}<main><h1>{title}</h1>
{body}
</main></body></html>"#,
        title = escape(title),
        nonce = escape(nonce),
    )
}

/// A hidden CSRF field for a form posted from a logged-in page.
pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf_token" value="{}">"#, escape(csrf))
}

/// An error box, or nothing.
pub fn error_box(message: Option<&str>) -> String {
    message.map(|message| format!(r#"<p class="error" id="error">{}</p>"#, escape(message))).unwrap_or_default()
}

/// A notice box, or nothing.
pub fn notice_box(message: Option<&str>) -> String {
    message.map(|message| format!(r#"<p class="notice" id="notice">{}</p>"#, escape(message))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/script&gt;"
        );
    }

    #[test]
    fn layout_carries_the_nonce_and_escapes_the_title() {
        let page = layout("<b>", "abc123", Some(&Viewer { username: "<u>", csrf: "tok" }), "<p>hi</p>");
        assert!(page.contains(r#"<style nonce="abc123">"#));
        assert!(page.contains("&lt;b&gt;") && page.contains("&lt;u&gt;"));
        assert!(page.contains(r#"name="csrf_token" value="tok""#));
        assert!(!page.contains("<script"), "pages work without scripts");
    }
}
