package cpsim;

import java.security.SecureRandom;
import java.util.LinkedHashMap;
import java.util.Map;
import simcommon.Recorder;

/**
 * The gateway's SSO session (opened by a browser login, shared by every API client) and the
 * brokerage session inside it (`authenticated` / `connected` / `competing`), with the
 * `/v1/api/...` endpoints. Time-driven changes (auth delay, idle timeout, expiry, competing
 * session, failed reauthentication) are evaluated by {@link #tick} every 20 ms.
 */
final class Session {
    static final String MAC = "98:F2:B3:23:BF:A0";
    static final String SERVER_NAME = "JifN19053";
    static final String SERVER_VERSION = "Build 10.25.0a, Dec 5, 2023 5:48:12 PM";
    static final int USER_ID = 123;

    /** One API answer: HTTP status and JSON body. */
    static final class Answer {
        final int status;
        final String json;

        Answer(int status, Object body) {
            this.status = status;
            StringBuilder sb = new StringBuilder();
            Recorder.value(sb, body);
            this.json = sb.toString();
        }
    }

    private final Recorder rec;
    private final long authDelayMs;
    private final long idleMs;
    private final boolean reauthFails;
    private final long reauthFailAfterMs;
    private final long expiryMs;
    private final long competingMs;
    private int api401Left;
    private final SecureRandom rnd = new SecureRandom();

    private boolean sso;
    private String ssoId = "";
    private boolean authenticated;
    private boolean connected;
    private boolean competing;
    private long lastActivity;
    private long authAt = -1;
    private long expiryAt = -1;
    private long competingAt = -1;
    private long ssoEndAt = -1;

    Session(Scenario sc, Recorder rec) {
        this.rec = rec;
        this.authDelayMs = sc.integer("auth_delay_ms", 500);
        this.idleMs = sc.millisOfSeconds("idle_timeout_s", 360);
        this.reauthFails = sc.bool("reauth_fails", false);
        this.reauthFailAfterMs = sc.millisOfSeconds("reauth_fail_after_s", 5);
        this.expiryMs = sc.millisOfSeconds("session_expiry_s", -1);
        this.competingMs = sc.millisOfSeconds("competing_after_s", -1);
        this.api401Left = sc.integer("api_401_count", 0);
    }

    /** A full login (browser, second factor accepted): a new SSO session replaces any old one. */
    synchronized void open(String username) {
        long now = System.currentTimeMillis();
        byte[] b = new byte[16];
        rnd.nextBytes(b);
        StringBuilder hex = new StringBuilder();
        for (byte x : b) {
            hex.append(String.format("%02x", x));
        }
        sso = true;
        ssoId = hex.toString();
        authenticated = false;
        connected = false;
        competing = false;
        lastActivity = now;
        authAt = now + authDelayMs;
        expiryAt = expiryMs < 0 ? -1 : now + expiryMs;
        competingAt = competingMs < 0 ? -1 : now + competingMs;
        ssoEndAt = -1;
        changed("login", "username", username);
    }

    private void end(String reason) {
        sso = false;
        ssoId = "";
        authenticated = false;
        connected = false;
        competing = false;
        authAt = expiryAt = competingAt = ssoEndAt = -1;
        changed(reason);
    }

    private void changed(String reason, Object... extra) {
        Object[] kv = new Object[10 + extra.length];
        kv[0] = "reason"; kv[1] = reason;
        kv[2] = "sso"; kv[3] = sso;
        kv[4] = "authenticated"; kv[5] = authenticated;
        kv[6] = "connected"; kv[7] = connected;
        kv[8] = "competing"; kv[9] = competing;
        System.arraycopy(extra, 0, kv, 10, extra.length);
        rec.event("session", kv);
    }

    synchronized void tick() {
        if (!sso) {
            return;
        }
        long now = System.currentTimeMillis();
        if (ssoEndAt >= 0 && now >= ssoEndAt) {
            end("reauthenticate_failed");
            return;
        }
        if (idleMs >= 0 && now - lastActivity >= idleMs) {
            end("idle_timeout");
            return;
        }
        if (competingAt >= 0 && now >= competingAt) {
            competingAt = -1;
            competing = true;
            authenticated = false;
            connected = true;
            authAt = -1;
            changed("competing");
        }
        if (expiryAt >= 0 && now >= expiryAt) {
            expiryAt = -1;
            authAt = -1;
            if (authenticated || !connected) {
                authenticated = false;
                connected = true;
                changed("session_expiry");
            }
        }
        if (authAt >= 0 && now >= authAt) {
            authAt = -1;
            if (!competing && !(authenticated && connected)) {
                authenticated = true;
                connected = true;
                changed("authenticated");
            }
        }
    }

    private Map<String, Object> authStatus(boolean full) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("authenticated", authenticated);
        m.put("competing", competing);
        m.put("connected", connected);
        m.put("message", "");
        m.put("MAC", MAC);
        Map<String, Object> info = new LinkedHashMap<>();
        info.put("serverName", SERVER_NAME);
        info.put("serverVersion", SERVER_VERSION);
        m.put("serverInfo", info);
        if (full) {
            m.put("fail", "");
        }
        return m;
    }

    private static Answer error(int status, String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("error", message);
        m.put("statusCode", status);
        return new Answer(status, m);
    }

    /** Answers one `/v1/api/...` request. */
    synchronized Answer api(String method, String path) {
        boolean get = method.equals("GET");
        boolean post = method.equals("POST");
        String endpoint;
        switch (path) {
            case "/v1/api/iserver/auth/status":
            case "/v1/api/tickle":
                if (!get && !post) {
                    return error(405, "method not allowed");
                }
                endpoint = path;
                break;
            case "/v1/api/iserver/reauthenticate":
            case "/v1/api/logout":
                if (!post) {
                    return error(405, "method not allowed");
                }
                endpoint = path;
                break;
            default:
                return error(404, "Not Found");
        }
        tick();
        if (!sso) {
            return error(401, "not authenticated");
        }
        if (api401Left > 0) {
            api401Left--;
            return error(401, "not authenticated");
        }
        long now = System.currentTimeMillis();
        lastActivity = now;
        switch (endpoint) {
            case "/v1/api/iserver/auth/status":
                return new Answer(200, authStatus(true));
            case "/v1/api/tickle": {
                rec.event("tickle", "authenticated", authenticated, "connected", connected, "competing", competing);
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("session", ssoId);
                long left = idleMs >= 0 ? idleMs : 86_400_000L;
                if (ssoEndAt >= 0) {
                    left = Math.min(left, Math.max(0, ssoEndAt - now));
                }
                m.put("ssoExpires", left);
                m.put("collission", false);
                m.put("userId", USER_ID);
                Map<String, Object> hmds = new LinkedHashMap<>();
                hmds.put("error", "no bridge");
                m.put("hmds", hmds);
                Map<String, Object> iserver = new LinkedHashMap<>();
                iserver.put("authStatus", authStatus(false));
                m.put("iserver", iserver);
                return new Answer(200, m);
            }
            case "/v1/api/iserver/reauthenticate": {
                String outcome;
                if (reauthFails) {
                    outcome = "fails";
                    authAt = -1;
                    if (authenticated) {
                        authenticated = false;
                        changed("reauthenticate_failing");
                    }
                    if (ssoEndAt < 0) {
                        ssoEndAt = now + reauthFailAfterMs;
                    }
                } else if (competing) {
                    outcome = "competing";
                } else {
                    outcome = "triggered";
                    authAt = now + authDelayMs;
                }
                rec.event("reauthenticate", "outcome", outcome);
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("message", "triggered");
                return new Answer(200, m);
            }
            case "/v1/api/logout": {
                rec.event("logout");
                end("logout");
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("status", true);
                return new Answer(200, m);
            }
            default:
                return error(404, "Not Found");
        }
    }
}
