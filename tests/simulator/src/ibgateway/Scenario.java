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
            "username", "password", "paper_username", "paper_password", "totp_secret", "accounts", "paper_accounts", "code_key_stall_ms",
            "api_port", "server_version", "title", "main_title", "devices", "time_factor",
            "clock_offset_s", "max_failures", "lockout_seconds", "lockout_title", "existing_session",
            "existing_session_style", "relogin_after_s", "nightly_restart_after_s", "token_ttl_s",
            "token_expired", "crash_after_s", "hang_after_s", "link_loss_after_s",
            "link_restore_after_s", "reject_codes", "silent_drop", "password_notice_days",
            "tip_of_the_day", "progress_modal", "connection_failed", "startup_delay_s",
            "auth_delay_s", "connect_delay_s", "init_delay_s", "start_delay_s", "twofa_timeout_s",
            "ccp_timeout_s", "default_mode", "mode_toggle_buttongroup", "order_id", "api_hang_handshake",
            "bid_ask_notice", "look", "prefill_username", "focus_thief_after_chars", "focus_return", "login_messages",
            "post_login_notice", "passkey_required", "free_trading_account", "hyphenated_names", "device_preselect",
            "slow_paint_ms", "chaos_seed"));

    /** The perturbations `chaos_seed` chose (recorded by the simulator at start). */
    final java.util.Map<String, String> chaos = new java.util.TreeMap<>();

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
        if (p.getProperty("chaos_seed") != null) {
            chaos(integer("chaos_seed", 0));
        }
    }

    /**
     * `chaos_seed`: a seeded mix of the perturbations real versions show, each chosen with
     * some probability unless the scenario sets the key itself. The same seed gives the same
     * mix.
     */
    private void chaos(int seed) {
        java.util.Random r = new java.util.Random(seed);
        String pw = str("password", "Secret-Pass_1!");
        String[] looks = {"metal", "nimbus", "flat"};
        pick("look", looks[r.nextInt(looks.length)]);
        if (r.nextInt(3) == 0) {
            pick("prefill_username", "previous_user");
        }
        if (r.nextInt(2) == 0) {
            pick("focus_thief_after_chars", String.valueOf(1 + r.nextInt(Math.max(1, pw.length() - 1))));
            pick("focus_return", r.nextBoolean() ? "same" : "other");
        }
        if (r.nextInt(2) == 0) {
            String[] rows = {"IB Key", "mobile  authenticator APP", "Security Code Card"};
            java.util.List<String> list = new java.util.ArrayList<>(java.util.Arrays.asList(rows));
            java.util.Collections.shuffle(list, r);
            pick("devices", String.join(",", list));
            pick("device_preselect", String.valueOf(r.nextInt(list.size())));
        }
        if (r.nextInt(4) == 0) {
            pick("hyphenated_names", "true");
        }
        if (r.nextInt(3) == 0) {
            pick("slow_paint_ms", String.valueOf(200 + r.nextInt(1200)));
        }
    }

    private void pick(String key, String value) {
        if (p.getProperty(key) == null) {
            p.setProperty(key, value);
            chaos.put(key, value);
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
