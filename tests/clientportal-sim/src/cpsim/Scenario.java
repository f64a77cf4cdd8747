package cpsim;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Properties;
import java.util.Set;

/**
 * The scenario: a java.util.Properties file named by -Dsim.scenario. Every key is documented
 * in tests/clientportal-sim/README.md; an unknown key or a bad value stops the simulator with
 * exit code 2 and a message naming the key, so a typo in a test cannot silently change
 * behaviour.
 */
final class Scenario {
    static final Set<String> KEYS = new HashSet<>(Arrays.asList(
            "username", "password", "totp_secret", "strict_code", "reject_codes", "max_failures",
            "lockout_s", "ids_changed", "push_only", "push_timeout_s", "auth_delay_ms",
            "slow_page_ms", "idle_timeout_s", "reauth_fails", "reauth_fail_after_s",
            "session_expiry_s", "competing_after_s", "api_401_count", "crash_after_s"));

    private final Properties p = new Properties();
    final String source;

    Scenario(String path) throws IOException {
        source = path == null || path.isEmpty() ? "(no -Dsim.scenario)" : path;
        if (path != null && !path.isEmpty()) {
            try (InputStreamReader r = new InputStreamReader(new FileInputStream(path), StandardCharsets.UTF_8)) {
                p.load(r);
            }
        }
        for (String k : p.stringPropertyNames()) {
            if (!KEYS.contains(k)) {
                throw new IllegalArgumentException(source + ": unknown scenario key '" + k + "'");
            }
        }
    }

    String str(String key, String def) {
        String v = p.getProperty(key);
        return v == null ? def : v.trim();
    }

    int integer(String key, int def) {
        String v = p.getProperty(key);
        if (v == null || v.trim().isEmpty()) {
            return def;
        }
        try {
            int n = Integer.parseInt(v.trim());
            if (n < 0) {
                throw new NumberFormatException();
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(source + ": key '" + key + "' must be a non-negative integer");
        }
    }

    /** A duration in seconds (fractions allowed) as milliseconds; `def` (may be -1: never) when unset. */
    long millisOfSeconds(String key, double def) {
        String v = p.getProperty(key);
        double d = def;
        if (v != null && !v.trim().isEmpty()) {
            try {
                d = Double.parseDouble(v.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(source + ": key '" + key + "' must be a number of seconds");
            }
            if (d < 0 || Double.isNaN(d) || Double.isInfinite(d)) {
                throw new IllegalArgumentException(source + ": key '" + key + "' must be a number of seconds >= 0");
            }
        }
        return d < 0 ? -1 : Math.round(d * 1000);
    }

    boolean bool(String key, boolean def) {
        String v = p.getProperty(key);
        if (v == null || v.trim().isEmpty()) {
            return def;
        }
        switch (v.trim().toLowerCase()) {
            case "true": case "yes": case "1": return true;
            case "false": case "no": case "0": return false;
            default:
                throw new IllegalArgumentException(source + ": key '" + key + "' must be true or false");
        }
    }
}
