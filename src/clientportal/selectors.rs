//! How the Client Portal login page's elements are found, as data, like the dialog
//! catalogue: by role (a text box, a password box, a button, a list) and accessible name (its
//! `<label>`, `aria-label`, `aria-labelledby`, placeholder, or a button's text), never by
//! `id` or CSS class. IBKR changes its page's markup; the words people read change far less
//! often. Names are lower-case substrings; the first target whose name matches wins.

/// What kind of element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `<input>` of type text, email, tel, number or none, or a `<textarea>`.
    TextBox,
    /// `<input type=password>`.
    Password,
    /// `<button>`, `<input type=submit|button>`, or `role=button`.
    Button,
    /// `<select>`.
    Select,
}

impl Role {
    /// The name the page finder (`FINDER_JS`) knows it by.
    pub fn js(self) -> &'static str {
        match self {
            Role::TextBox => "textbox",
            Role::Password => "password",
            Role::Button => "button",
            Role::Select => "select",
        }
    }
}

/// One element of the login.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// For messages: "the username field".
    pub what: &'static str,
    /// Its role.
    pub role: Role,
    /// Accessible-name substrings (lower case), in order of preference.
    pub names: &'static [&'static str],
}

/// The username field.
pub const USERNAME: Target = Target {
    what: "the username field",
    role: Role::TextBox,
    names: &["username", "user name", "login id", "user id"],
};

/// The password field.
pub const PASSWORD: Target = Target {
    what: "the password field",
    role: Role::Password,
    names: &["password"],
};

/// The button that submits the credentials.
pub const LOGIN: Target = Target {
    what: "the login button",
    role: Role::Button,
    names: &["log in", "login", "sign in"],
};

/// The second-factor device list.
pub const DEVICE_LIST: Target = Target {
    what: "the second-factor list",
    role: Role::Select,
    names: &[
        "second factor",
        "device",
        "authentication method",
        "authenticat",
    ],
};

/// The option of [`DEVICE_LIST`] for IBKR's Mobile Authenticator app: its text, or the value
/// IBKR's page has used for it.
pub const AUTHENTICATOR_OPTION: (&[&str], &str) =
    (&["mobile authenticator", "authenticator app"], "4");

/// The button after choosing the device.
pub const DEVICE_CONTINUE: Target = Target {
    what: "the continue button",
    role: Role::Button,
    names: &["continue", "next", "select", "ok"],
};

/// The code field.
pub const CODE: Target = Target {
    what: "the code field",
    role: Role::TextBox,
    names: &["code", "6-digit", "security", "response"],
};

/// The button that submits the code.
pub const CODE_SUBMIT: Target = Target {
    what: "the verify button",
    role: Role::Button,
    names: &["verify", "submit", "continue", "log in", "login"],
};

/// Texts of the page after a successful login (lower case).
pub const LOGGED_IN: &[&str] = &[
    "client login succeeds",
    "login succeeds",
    "you are logged in",
];
/// Texts that say the username or password is wrong.
pub const WRONG_CREDENTIALS: &[&str] = &[
    "invalid username password",
    "invalid username or password",
    "invalid username/password",
];
/// Texts that say the code was refused.
pub const CODE_REJECTED: &[&str] = &["invalid security code", "invalid code", "code is incorrect"];
/// Texts that say logins are locked for a while.
pub const LOCKED: &[&str] = &[
    "too many failed attempts",
    "too many attempts",
    "try again in",
];

/// Finds an element by role and accessible name and marks it `data-ibw="<mark>"`, or says
/// what it found instead. Called as `FINDER_JS(role, names, mark)`; returns a JSON string
/// `{"found": bool, "seen": [names of that role]}`.
pub const FINDER_JS: &str = r#"
(function(role, names, mark) {
  const norm = s => (s || "").replace(/\s+/g, " ").trim().toLowerCase();
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const labelText = el => {
    const parts = [];
    const al = el.getAttribute("aria-label"); if (al) parts.push(al);
    const lb = el.getAttribute("aria-labelledby");
    if (lb) lb.split(/\s+/).forEach(id => { const x = document.getElementById(id); if (x) parts.push(x.textContent); });
    if (el.labels) for (const l of el.labels) parts.push(l.textContent);
    const ph = el.getAttribute("placeholder"); if (ph) parts.push(ph);
    if (role === "button") { parts.push(el.textContent); if (el.value) parts.push(el.value); }
    const t = el.getAttribute("title"); if (t) parts.push(t);
    return norm(parts.join(" "));
  };
  const ofRole = el => {
    const tag = el.tagName.toLowerCase(), type = norm(el.getAttribute("type"));
    if (role === "password") return tag === "input" && type === "password";
    if (role === "textbox") return (tag === "input" && ["", "text", "email", "tel", "number", "search"].includes(type)) || tag === "textarea";
    if (role === "select") return tag === "select";
    if (role === "button") return tag === "button" || (tag === "input" && ["submit", "button"].includes(type)) || norm(el.getAttribute("role")) === "button";
    return false;
  };
  const all = Array.from(document.querySelectorAll("input, textarea, select, button, [role=button]"))
    .filter(el => ofRole(el) && visible(el) && !el.disabled);
  document.querySelectorAll("[data-ibw='" + mark + "']").forEach(el => el.removeAttribute("data-ibw"));
  for (const n of names) {
    const hit = all.find(el => labelText(el).includes(n));
    if (hit) { hit.setAttribute("data-ibw", mark); return JSON.stringify({found: true, seen: []}); }
  }
  return JSON.stringify({found: false, seen: all.map(labelText).slice(0, 10)});
})
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_lower_case_names() {
        for t in [
            USERNAME,
            PASSWORD,
            LOGIN,
            DEVICE_LIST,
            DEVICE_CONTINUE,
            CODE,
            CODE_SUBMIT,
        ] {
            assert!(!t.names.is_empty(), "{}", t.what);
            for n in t.names {
                assert_eq!(*n, n.to_lowercase(), "{}", t.what);
            }
        }
        for list in [LOGGED_IN, WRONG_CREDENTIALS, CODE_REJECTED, LOCKED] {
            for n in list {
                assert_eq!(*n, n.to_lowercase());
            }
        }
    }
}
