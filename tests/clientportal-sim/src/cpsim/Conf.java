package cpsim;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The gateway's conf.yaml, read with a line parser that understands the shape of the real
 * file: top-level `key: value` pairs and the `ips:` section with `allow:` / `deny:` lists
 * (block `- item` lines or a flow `[a, b]` list; `*` is a wildcard, as in `192.*`).
 */
final class Conf {
    final Path file;
    final Map<String, String> top = new HashMap<>();
    final List<String> allow = new ArrayList<>();
    final List<String> deny = new ArrayList<>();

    private Conf(Path file) {
        this.file = file;
    }

    static Conf load(Path file) throws IOException {
        Conf c = new Conf(file);
        String section = "";
        List<String> list = null;
        for (String raw : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            String line = stripComment(raw);
            if (line.trim().isEmpty()) {
                continue;
            }
            int indent = 0;
            while (indent < line.length() && (line.charAt(indent) == ' ' || line.charAt(indent) == '\t')) {
                indent++;
            }
            String t = line.trim();
            if (indent == 0) {
                list = null;
                int colon = t.indexOf(':');
                if (colon < 0) {
                    continue;
                }
                section = t.substring(0, colon).trim();
                c.top.put(section, unquote(t.substring(colon + 1).trim()));
                continue;
            }
            if (!section.equals("ips")) {
                continue;
            }
            if (t.startsWith("- ") || t.equals("-")) {
                if (list != null) {
                    String item = unquote(t.substring(1).trim());
                    if (!item.isEmpty()) {
                        list.add(item);
                    }
                }
                continue;
            }
            int colon = t.indexOf(':');
            if (colon < 0) {
                continue;
            }
            String key = t.substring(0, colon).trim();
            String rest = t.substring(colon + 1).trim();
            list = key.equals("allow") ? c.allow : key.equals("deny") ? c.deny : null;
            if (list != null && rest.startsWith("[")) {
                String inner = rest.substring(1, rest.endsWith("]") ? rest.length() - 1 : rest.length());
                for (String s : inner.split(",")) {
                    String item = unquote(s.trim());
                    if (!item.isEmpty()) {
                        list.add(item);
                    }
                }
            }
        }
        return c;
    }

    private static String stripComment(String line) {
        boolean quoted = false;
        for (int i = 0; i < line.length(); i++) {
            char ch = line.charAt(i);
            if (ch == '"') {
                quoted = !quoted;
            } else if (ch == '#' && !quoted && (i == 0 || Character.isWhitespace(line.charAt(i - 1)))) {
                return line.substring(0, i);
            }
        }
        return line;
    }

    private static String unquote(String s) {
        if (s.length() >= 2 && (s.startsWith("\"") && s.endsWith("\"") || s.startsWith("'") && s.endsWith("'"))) {
            return s.substring(1, s.length() - 1);
        }
        return s;
    }

    String str(String key, String def) {
        String v = top.get(key);
        return v == null || v.isEmpty() ? def : v;
    }

    int listenPort() {
        String v = str("listenPort", "5000");
        try {
            int p = Integer.parseInt(v);
            if (p < 1 || p > 65535) {
                throw new NumberFormatException();
            }
            return p;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(file + ": listenPort must be a port number, not '" + v + "'");
        }
    }

    boolean listenSsl() {
        return !str("listenSsl", "true").equalsIgnoreCase("false");
    }

    /** The keystore (`sslCert`), relative to the config file's directory. */
    Path keystore() {
        Path p = Path.of(str("sslCert", "vertx.jks"));
        Path dir = file.toAbsolutePath().getParent();
        return p.isAbsolute() || dir == null ? p : dir.resolve(p);
    }

    char[] keystorePassword() {
        return str("sslPwd", "mywebapi").toCharArray();
    }

    /** A client is served when its address matches an `allow` pattern and no `deny` pattern. */
    boolean allowed(String ip) {
        for (String d : deny) {
            if (matches(d, ip)) {
                return false;
            }
        }
        for (String a : allow) {
            if (matches(a, ip)) {
                return true;
            }
        }
        return false;
    }

    static boolean matches(String pattern, String ip) {
        String[] parts = pattern.split("\\*", -1);
        StringBuilder re = new StringBuilder();
        for (int i = 0; i < parts.length; i++) {
            if (i > 0) {
                re.append(".*");
            }
            if (!parts[i].isEmpty()) {
                re.append(Pattern.quote(parts[i]));
            }
        }
        return Pattern.matches(re.toString(), ip);
    }
}
