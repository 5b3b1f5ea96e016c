//! Server-rendered HTML: the one layout every page uses and the pieces pages share, as `maud`
//! templates. `maud` escapes every interpolation at compile time, so untrusted text cannot be put
//! into a page unescaped by forgetting a call; `PreEscaped` is kept for what is HTML or CSS by
//! construction (the style sheet below, the QR code's SVG).

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::http::base_path::BasePath;
use crate::identity::sessions::CsrfToken;

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
    pub csrf: &'a CsrfToken,
}

/// A whole page around `body`, which only a template can have built; its links under `base`.
pub fn layout(title: &str, nonce: &str, base: &BasePath, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Kavach" }
                // A constant of ours, and CSS rather than text: escaping would only corrupt it.
                style nonce=(nonce) { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "Kavach" }
                    @if let Some(viewer) = viewer {
                        nav {
                            a href=(base.link("/dashboard")) { "Dashboard" }
                            a href=(base.link("/apikey")) { "API key" }
                            a href=(base.link("/auth/sessions")) { "Sessions" }
                            a href=(base.link("/broker")) { "Broker" }
                            a href=(base.link("/security")) { "Security" }
                            a href=(base.link("/logs")) { "Logs" }
                        }
                        span id="whoami" { (viewer.username) }
                        form method="post" action=(base.link("/auth/logout")) {
                            (csrf_field(viewer.csrf))
                            button id="logout" type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A hidden CSRF field for a form posted from a logged-in page.
pub fn csrf_field(csrf: &CsrfToken) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(csrf.expose()); }
}

/// An error box, or nothing.
pub fn error_box(message: Option<&str>) -> Markup {
    html! { @if let Some(message) = message { p class="error" id="error" { (message) } } }
}

/// A notice box, or nothing.
pub fn notice_box(message: Option<&str>) -> Markup {
    html! { @if let Some(message) = message { p class="notice" id="notice" { (message) } } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolations_are_escaped() {
        let markup = error_box(Some(r#"<script>"x" & 'y'</script>"#)).into_string();
        assert_eq!(markup, r#"<p class="error" id="error">&lt;script&gt;&quot;x&quot; &amp; 'y'&lt;/script&gt;</p>"#);
        assert_eq!(notice_box(None).into_string(), "");
    }

    #[test]
    fn layout_carries_the_nonce_and_escapes_the_title() {
        let csrf = CsrfToken::from_stored("tok".to_owned());
        let body = html! { p { "hi" } };
        let viewer = Viewer { username: "<u>", csrf: &csrf };
        let page = layout("<b>", "abc123", &BasePath::root(), Some(&viewer), body).into_string();
        assert!(page.contains(r#"<style nonce="abc123">"#));
        assert!(page.contains("&lt;b&gt;") && page.contains("&lt;u&gt;"));
        assert!(page.contains(r#"name="csrf_token" value="tok""#));
        assert!(page.contains("<main><h1>&lt;b&gt;</h1><p>hi</p></main>"));
        assert!(!page.contains("<script"), "pages work without scripts");
    }
}
