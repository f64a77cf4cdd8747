package ibgateway;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;

/**
 * The scenario: a java.util.Properties file named by -Dsim.scenario. Every key is documented
 * in tests/simulator/README.md; an unknown key or a bad value stops the simulator with exit
 * code 2 and a message naming the key, so a typo in a test cannot silently change behaviour.
 */
final class Scenario {
    static final Set<String> KEYS = new HashSet<>(Arrays.asList(
            "username", "password", "paper_username", "paper_password", "totp_secret", "accounts",
            "api_port", "server_version", "title", "main_title", "devices", "time_factor",
            "clock_offset_s", "max_failures", "lockout_seconds", "lockout_title", "existing_session",
            "existing_session_style", "relogin_after_s", "nightly_restart_after_s", "token_ttl_s",
            "token_expired", "crash_after_s", "hang_after_s", "link_loss_after_s",
            "link_restore_after_s", "reject_codes", "silent_drop", "password_notice_days",
            "tip_of_the_day", "progress_modal", "connection_failed", "startup_delay_s",
            "auth_delay_s", "connect_delay_s", "init_delay_s", "start_delay_s", "twofa_timeout_s",
            "ccp_timeout_s", "default_mode", "mode_toggle_buttongroup", "order_id", "api_hang_handshake",
            "bid_ask_notice", "look", "prefill_username", "focus_thief_after_chars", "focus_return", "login_messages",
            "post_login_notice", "passkey_required", "free_trading_account", "hyphenated_names", "device_preselect"));

    private final Properties p = new Properties();
    final String source;

    Scenario(String path) throws IOException {
        source = path == null ? "(no -Dsim.scenario)" : path;
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
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(source + ": key '" + key + "' must be an integer");
        }
    }

    double dbl(String key, double def) {
        String v = p.getProperty(key);
        if (v == null || v.trim().isEmpty()) {
            return def;
        }
        try {
            return Double.parseDouble(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(source + ": key '" + key + "' must be a number");
        }
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

    /** Optional delay in seconds; negative means "never". */
    double optSeconds(String key) {
        return dbl(key, -1);
    }

    List<String> list(String key, String def) {
        List<String> out = new ArrayList<>();
        for (String s : str(key, def).split(",")) {
            if (!s.trim().isEmpty()) {
                out.add(s.trim());
            }
        }
        return out;
    }

    String oneOf(String key, String def, String... allowed) {
        String v = str(key, def);
        for (String a : allowed) {
            if (a.equals(v)) {
                return v;
            }
        }
        throw new IllegalArgumentException(source + ": key '" + key + "' must be one of " + Arrays.toString(allowed));
    }
}
