package cpsim;

import java.security.SecureRandom;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import simcommon.Recorder;
import simcommon.Totp;

/**
 * The browser login at `/sso/Login`: credentials, second-factor device, IB Key push wait or
 * TOTP code, then "Client login succeeds" and a new SSO session. Server-rendered HTML, no
 * JavaScript: every form posts back to `/sso/Login` and carries a hidden one-time page token,
 * which tells the server which step the browser is on. With `ids_changed=true` every id,
 * name and class is random per page load (labels, roles, aria-labels and texts stay).
 */
final class Login {
    static final String PATH = "/sso/Login";
    static final String ALERT_INVALID = "Invalid username password combination";
    static final String ALERT_LOCKED = "Too many failed attempts. Try again in 15 minutes.";
    static final String ALERT_CODE = "Invalid security code";
    static final String ALERT_PUSH_TIMEOUT = "Second factor authentication timed out. Please log in again.";
    static final String ALERT_EXPIRED = "Your login session has expired. Please log in again.";
    static final String ALERT_DEVICE = "Please select a second factor device.";

    static final String LABEL_USERNAME = "Username";
    static final String LABEL_PASSWORD = "Password";
    static final String LABEL_DEVICE = "Select second factor device";
    static final String LABEL_CODE = "Enter the 6-digit code from your authenticator app";
    static final String LABEL_CARD = "Enter the response from your security code card";
    static final String SUCCESS = "Client login succeeds";
    static final long PAGE_TTL_MS = 10 * 60_000L;

    /** The devices IBKR offers: select value and text. */
    static final String[][] DEVICES = {
        {"5", "IB Key"}, {"4", "Mobile Authenticator app"}, {"1", "Security code card"},
    };

    /** An HTML answer: status, body, and the page's name for the record. */
    static final class Html {
        final int status;
        final String body;
        final String page;

        Html(int status, String body, String page) {
            this.status = status;
            this.body = body;
            this.page = page;
        }
    }

    /** Ids, names and classes of one page load: the defaults, or random ones (`ids_changed`). */
    static final class Names {
        private final SecureRandom rnd;
        private final Map<String, String> map = new HashMap<>();

        Names(SecureRandom rnd) {
            this.rnd = rnd;
        }

        private String get(String kind, String def) {
            if (rnd == null) {
                return def;
            }
            return map.computeIfAbsent(kind + ":" + def, k -> {
                String alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
                StringBuilder sb = new StringBuilder();
                sb.append((char) ('a' + rnd.nextInt(26)));
                for (int i = 0; i < 9; i++) {
                    sb.append(alphabet.charAt(rnd.nextInt(alphabet.length())));
                }
                return sb.toString();
            });
        }

        String id(String def) {
            return get("id", def);
        }

        String name(String def) {
            return get("name", def);
        }

        String cls(String defs) {
            StringBuilder sb = new StringBuilder();
            for (String c : defs.trim().split("\\s+")) {
                if (sb.length() > 0) {
                    sb.append(' ');
                }
                sb.append(get("class", c));
            }
            return sb.toString();
        }
    }

    /** One rendered form: its step, names, and what the login has established so far. */
    static final class Page {
        final String token;
        final String stage;
        final Names names;
        final long created = System.currentTimeMillis();
        String username;
        long pushDeadline = -1;
        boolean pushTimedOut;

        Page(String token, String stage, Names names) {
            this.token = token;
            this.stage = stage;
            this.names = names;
        }
    }

    private final Recorder rec;
    private final Session session;
    private final ServerState state;
    private final Totp totp;
    private final String username;
    private final String password;
    private final boolean strictCode;
    private int rejectCodesLeft;
    private final int maxFailures;
    private final long lockoutMs;
    private final boolean idsChanged;
    private final boolean pushOnly;
    private final long pushTimeoutMs;
    private final SecureRandom rnd = new SecureRandom();
    private final Map<String, Page> pages = new HashMap<>();

    Login(Scenario sc, Recorder rec, Session session, ServerState state) {
        this.rec = rec;
        this.session = session;
        this.state = state;
        this.totp = new Totp(sc.str("totp_secret", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"));
        this.username = sc.str("username", "testuser");
        this.password = sc.str("password", "Secret-Pass_1!");
        this.strictCode = sc.bool("strict_code", false);
        this.rejectCodesLeft = sc.integer("reject_codes", 0);
        this.maxFailures = Math.max(1, sc.integer("max_failures", 3));
        this.lockoutMs = sc.millisOfSeconds("lockout_s", 900);
        this.idsChanged = sc.bool("ids_changed", false);
        this.pushOnly = sc.bool("push_only", false);
        this.pushTimeoutMs = sc.millisOfSeconds("push_timeout_s", 180);
    }

    // ------------------------------------------------------------------ flow

    private Page newPage(String stage, String user) {
        expire();
        byte[] b = new byte[16];
        rnd.nextBytes(b);
        StringBuilder hex = new StringBuilder();
        for (byte x : b) {
            hex.append(String.format("%02x", x));
        }
        Page p = new Page(hex.toString(), stage, new Names(idsChanged ? rnd : null));
        p.username = user;
        pages.put(p.token, p);
        return p;
    }

    private void expire() {
        long now = System.currentTimeMillis();
        for (Iterator<Page> it = pages.values().iterator(); it.hasNext();) {
            if (now - it.next().created > PAGE_TTL_MS) {
                it.remove();
            }
        }
    }

    /** Marks IB Key waits whose time is up (called by the ticker). */
    synchronized void tick() {
        long now = System.currentTimeMillis();
        for (Page p : pages.values()) {
            if (p.stage.equals("push") && !p.pushTimedOut && p.pushDeadline >= 0 && now >= p.pushDeadline) {
                p.pushTimedOut = true;
                rec.event("push_timeout", "username", p.username);
            }
        }
    }

    /** `GET /sso/Login`: the login form, or (`poll=<token>`) the IB Key wait's state. */
    synchronized Html get(Map<String, String> query) {
        String poll = query.get("poll");
        if (poll != null) {
            Page p = pages.get(poll);
            if (p == null || !p.stage.equals("push")) {
                return loginPage(ALERT_EXPIRED);
            }
            if (p.pushTimedOut || p.pushDeadline >= 0 && System.currentTimeMillis() >= p.pushDeadline) {
                if (!p.pushTimedOut) {
                    rec.event("push_timeout", "username", p.username);
                }
                pages.remove(poll);
                return loginPage(ALERT_PUSH_TIMEOUT);
            }
            return pushPage(p);
        }
        return loginPage(null);
    }

    /** `POST /sso/Login`: the step named by the form's page token. */
    synchronized Html post(Map<String, String> form) {
        expire();
        Page p = null;
        for (String v : form.values()) {
            Page candidate = pages.get(v);
            if (candidate != null) {
                p = candidate;
                break;
            }
        }
        if (p == null) {
            return loginPage(ALERT_EXPIRED);
        }
        if (p.stage.equals("push")) {
            return pushPage(p);
        }
        pages.remove(p.token);
        switch (p.stage) {
            case "credentials":
                return credentials(p, form);
            case "device":
                return device(p, form);
            case "code":
                return code(p, form);
            case "card":
                return card(p, form);
            default:
                return loginPage(ALERT_EXPIRED);
        }
    }

    private Html credentials(Page p, Map<String, String> form) {
        String user = form.getOrDefault(p.names.name("username"), "").trim();
        String pw = form.getOrDefault(p.names.name("password"), "");
        boolean ok = user.equals(username) && pw.equals(password);
        long now = System.currentTimeMillis();
        boolean locked = state.lockoutUntilMs > now;
        if (!locked && !ok) {
            state.failures++;
            if (state.failures >= maxFailures) {
                state.failures = 0;
                state.lockoutUntilMs = lockoutMs < 0 ? Long.MAX_VALUE : now + lockoutMs;
                state.save();
                rec.event("login_attempt", "username", user, "password_ok", false, "locked", true);
                return loginPage(ALERT_LOCKED);
            }
            state.save();
        }
        rec.event("login_attempt", "username", user, "password_ok", ok, "locked", locked);
        if (locked) {
            return loginPage(ALERT_LOCKED);
        }
        if (!ok) {
            return loginPage(ALERT_INVALID);
        }
        state.failures = 0;
        state.save();
        return devicePage(newPage("device", user), null);
    }

    private Html device(Page p, Map<String, String> form) {
        String v = form.getOrDefault(p.names.name("sf_select"), "").trim();
        String name = null;
        for (String[] d : DEVICES) {
            if (d[0].equals(v) && (!pushOnly || d[0].equals("5"))) {
                name = d[1];
            }
        }
        rec.event("device", "device", v, "name", name, "username", p.username);
        if (name == null) {
            return devicePage(newPage("device", p.username), ALERT_DEVICE);
        }
        switch (v) {
            case "5": {
                Page push = newPage("push", p.username);
                push.pushDeadline = pushTimeoutMs < 0 ? -1 : System.currentTimeMillis() + pushTimeoutMs;
                return pushPage(push);
            }
            case "4":
                return codePage(newPage("code", p.username), null);
            default:
                return codePage(newPage("card", p.username), null);
        }
    }

    private Html code(Page p, Map<String, String> form) {
        String code = form.getOrDefault(p.names.name("bronze-response"), "").trim();
        long cur = Totp.step(System.currentTimeMillis() / 1000);
        Long matched = null;
        if (code.matches("[0-9]{6}")) {
            long[] deltas = strictCode ? new long[] {0} : new long[] {0, -1, 1};
            for (long d : deltas) {
                if (totp.code(cur + d).equals(code)) {
                    matched = cur + d;
                    break;
                }
            }
        }
        String reason;
        if (matched == null) {
            reason = "wrong";
        } else if (state.usedSteps.contains(matched)) {
            reason = "reused";
        } else {
            // A step is used once, also when IBKR then rejects it (reject_codes).
            state.usedSteps.add(matched);
            state.save();
            if (rejectCodesLeft > 0) {
                rejectCodesLeft--;
                reason = "reject_codes";
            } else {
                reason = "ok";
            }
        }
        boolean accepted = reason.equals("ok");
        rec.event("code", "code", code, "step", matched, "current_step", cur, "accepted", accepted,
                "reason", reason, "username", p.username);
        if (!accepted) {
            return codePage(newPage("code", p.username), ALERT_CODE);
        }
        session.open(p.username);
        return successPage();
    }

    private Html card(Page p, Map<String, String> form) {
        String code = form.getOrDefault(p.names.name("bronze-response"), "").trim();
        rec.event("code", "code", code, "step", null, "accepted", false, "reason", "card", "username", p.username);
        return codePage(newPage("card", p.username), ALERT_CODE);
    }

    // ------------------------------------------------------------------ pages

    static String esc(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 16);
        for (char c : s.toCharArray()) {
            switch (c) {
                case '&': sb.append("&amp;"); break;
                case '<': sb.append("&lt;"); break;
                case '>': sb.append("&gt;"); break;
                case '"': sb.append("&quot;"); break;
                case '\'': sb.append("&#39;"); break;
                default: sb.append(c);
            }
        }
        return sb.toString();
    }

    private static String shell(Names n, String title, String refresh, String body) {
        StringBuilder b = new StringBuilder(4096);
        b.append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
                .append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        if (refresh != null) {
            b.append("<meta http-equiv=\"refresh\" content=\"").append(esc(refresh)).append("\">\n");
        }
        b.append("<title>").append(esc(title)).append("</title>\n<style>\n")
                .append("body{font-family:Helvetica,Arial,sans-serif;background:#f4f5f7;margin:0}\n")
                .append('.').append(n.cls("xyz-login-container"))
                .append("{max-width:420px;margin:48px auto;background:#fff;padding:32px;border-radius:6px}\n")
                .append('.').append(n.cls("form-group")).append("{margin-bottom:16px}\n")
                .append('.').append(n.cls("form-group")).append(" label{display:block;margin-bottom:4px}\n")
                .append('.').append(n.cls("form-control")).append("{width:100%;padding:8px;font-size:16px}\n")
                .append('.').append(n.cls("xyz-errormessage"))
                .append("{color:#a94442;background:#f2dede;padding:8px;margin-bottom:16px}\n")
                .append('.').append(n.cls("btn-primary"))
                .append("{background:#d81222;color:#fff;border:0;padding:10px 24px;font-size:18px}\n")
                .append("</style>\n</head>\n<body class=\"").append(n.cls("xyz-body")).append("\">\n")
                .append("<div id=\"").append(n.id("xyz-login-container")).append("\" class=\"")
                .append(n.cls("xyz-login-container")).append("\">\n")
                .append("<header class=\"").append(n.cls("xyz-header")).append("\"><span class=\"")
                .append(n.cls("xyz-logo")).append("\" aria-label=\"Interactive Brokers\">IBKR</span></header>\n")
                .append("<main class=\"").append(n.cls("xyz-main")).append("\">\n")
                .append(body)
                .append("</main>\n<footer class=\"").append(n.cls("xyz-footer"))
                .append("\"><p>Client Portal Gateway</p></footer>\n</div>\n</body>\n</html>\n");
        return b.toString();
    }

    private static void formOpen(StringBuilder b, Page p, String formId, String label) {
        Names n = p.names;
        b.append("<form id=\"").append(n.id(formId)).append("\" name=\"").append(n.name(formId))
                .append("\" class=\"").append(n.cls("xyz-form")).append("\" method=\"post\" action=\"")
                .append(PATH).append("\" aria-label=\"").append(esc(label)).append("\" autocomplete=\"off\">\n")
                .append("<input type=\"hidden\" name=\"").append(n.name("loginTx")).append("\" value=\"")
                .append(p.token).append("\">\n");
    }

    private static void alert(StringBuilder b, Names n, String alert) {
        if (alert != null) {
            b.append("<div role=\"alert\" id=\"").append(n.id("xyz-errormessage")).append("\" class=\"")
                    .append(n.cls("xyz-errormessage alert alert-danger")).append("\">").append(esc(alert))
                    .append("</div>\n");
        }
    }

    private static void button(StringBuilder b, Names n, String id, String text) {
        b.append("<button type=\"submit\" id=\"").append(n.id(id)).append("\" class=\"")
                .append(n.cls("btn btn-lg btn-primary")).append("\">").append(esc(text)).append("</button>\n");
    }

    private Html loginPage(String alertText) {
        Page p = newPage("credentials", null);
        Names n = p.names;
        StringBuilder b = new StringBuilder();
        b.append("<h1 class=\"").append(n.cls("xyz-title")).append("\">Login</h1>\n");
        formOpen(b, p, "xyz-form-login", "Login");
        alert(b, n, alertText);
        b.append("<div class=\"").append(n.cls("form-group")).append("\">\n")
                .append("<label for=\"").append(n.id("xyz-field-username")).append("\">").append(LABEL_USERNAME)
                .append("</label>\n<input type=\"text\" id=\"").append(n.id("xyz-field-username"))
                .append("\" name=\"").append(n.name("username")).append("\" class=\"")
                .append(n.cls("form-control xyz-field-username")).append("\" aria-label=\"").append(LABEL_USERNAME)
                .append("\" autocomplete=\"username\" autocapitalize=\"off\" spellcheck=\"false\" required>\n")
                .append("</div>\n<div class=\"").append(n.cls("form-group")).append("\">\n")
                .append("<label for=\"").append(n.id("xyz-field-password")).append("\">").append(LABEL_PASSWORD)
                .append("</label>\n<input type=\"password\" id=\"").append(n.id("xyz-field-password"))
                .append("\" name=\"").append(n.name("password")).append("\" class=\"")
                .append(n.cls("form-control xyz-field-password")).append("\" aria-label=\"").append(LABEL_PASSWORD)
                .append("\" autocomplete=\"current-password\" required>\n</div>\n");
        button(b, n, "xyz-btn-login", "Login");
        b.append("</form>\n");
        return new Html(200, shell(n, "IBKR Login", null, b.toString()), alertText == null ? "login" : "login_alert");
    }

    private Html devicePage(Page p, String alertText) {
        Names n = p.names;
        StringBuilder b = new StringBuilder();
        b.append("<h1 class=\"").append(n.cls("xyz-title")).append("\">Second Factor Authentication</h1>\n");
        formOpen(b, p, "xyz-form-device", "Second Factor Authentication");
        alert(b, n, alertText);
        b.append("<div class=\"").append(n.cls("form-group")).append("\">\n")
                .append("<label for=\"").append(n.id("sf-select")).append("\">").append(LABEL_DEVICE)
                .append("</label>\n<select id=\"").append(n.id("sf-select")).append("\" name=\"")
                .append(n.name("sf_select")).append("\" class=\"").append(n.cls("form-control xyz-multiple"))
                .append("\" aria-label=\"").append(LABEL_DEVICE).append("\">\n");
        for (String[] d : DEVICES) {
            if (pushOnly && !d[0].equals("5")) {
                continue;
            }
            b.append("<option value=\"").append(d[0]).append("\">").append(esc(d[1])).append("</option>\n");
        }
        b.append("</select>\n</div>\n");
        button(b, n, "xyz-btn-continue", "Continue");
        b.append("</form>\n");
        return new Html(200, shell(n, "IBKR Login", null, b.toString()), "device");
    }

    private Html pushPage(Page p) {
        Names n = p.names;
        StringBuilder b = new StringBuilder();
        b.append("<h1 class=\"").append(n.cls("xyz-title")).append("\">Check your IB Key app</h1>\n")
                .append("<p id=\"").append(n.id("xyz-push-text")).append("\" class=\"").append(n.cls("xyz-text"))
                .append("\" role=\"status\">A notification has been sent to your mobile device. ")
                .append("Open the IB Key app and approve the login request.</p>\n");
        String refresh = "2;url=" + PATH + "?poll=" + p.token;
        return new Html(200, shell(n, "IBKR Login", refresh, b.toString()), "push");
    }

    private Html codePage(Page p, String alertText) {
        Names n = p.names;
        boolean card = p.stage.equals("card");
        String label = card ? LABEL_CARD : LABEL_CODE;
        StringBuilder b = new StringBuilder();
        b.append("<h1 class=\"").append(n.cls("xyz-title")).append("\">Second Factor Authentication</h1>\n")
                .append("<p class=\"").append(n.cls("xyz-text")).append("\">")
                .append(card ? "Security code card" : "Mobile Authenticator app").append("</p>\n");
        formOpen(b, p, "xyz-form-code", "Second Factor Authentication");
        alert(b, n, alertText);
        b.append("<div class=\"").append(n.cls("form-group")).append("\">\n")
                .append("<label for=\"").append(n.id("xyz-field-bronze-response")).append("\">").append(esc(label))
                .append("</label>\n<input type=\"text\" inputmode=\"numeric\" maxlength=\"6\" pattern=\"[0-9]*\" id=\"")
                .append(n.id("xyz-field-bronze-response")).append("\" name=\"").append(n.name("bronze-response"))
                .append("\" class=\"").append(n.cls("form-control xyz-field-bronze-response"))
                .append("\" aria-label=\"").append(esc(label)).append("\" autocomplete=\"one-time-code\" required>\n")
                .append("</div>\n");
        button(b, n, "xyz-btn-verify", "Verify");
        b.append("</form>\n");
        return new Html(200, shell(n, "IBKR Login", null, b.toString()), card ? "card" : "code");
    }

    private Html successPage() {
        Names n = new Names(idsChanged ? rnd : null);
        String body = "<h1 class=\"" + n.cls("xyz-title") + "\">" + SUCCESS + "</h1>\n";
        return new Html(200, shell(n, "Client Portal Gateway", null, body), "success");
    }
}
