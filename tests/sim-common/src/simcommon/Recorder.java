package simcommon;

import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Collection;
import java.util.Map;

/**
 * The record file: one JSON object per line, appended and flushed per line, for tests and
 * benchmarks. The supervisor never reads it. Path from -Dsim.record; no path means no record.
 * Shared by both simulators (tests/simulator and tests/clientportal-sim).
 */
public final class Recorder {
    private final FileOutputStream out;

    public Recorder(String path) throws IOException {
        this.out = path == null || path.isEmpty() ? null : new FileOutputStream(path, true);
    }

    /** Records an event: ev name, then alternating key/value pairs. */
    public synchronized void event(String ev, Object... kv) {
        if (out == null) {
            return;
        }
        StringBuilder sb = new StringBuilder(128);
        sb.append("{\"t\":").append(System.currentTimeMillis()).append(",\"ev\":");
        quote(sb, ev);
        for (int i = 0; i + 1 < kv.length; i += 2) {
            sb.append(',');
            quote(sb, String.valueOf(kv[i]));
            sb.append(':');
            value(sb, kv[i + 1]);
        }
        sb.append("}\n");
        try {
            out.write(sb.toString().getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            System.err.println("sim: cannot write record: " + e);
        }
    }

    public static void value(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Number || v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                quote(sb, String.valueOf(e.getKey()));
                sb.append(':');
                value(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof Collection) {
            sb.append('[');
            boolean first = true;
            for (Object o : (Collection<?>) v) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                value(sb, o);
            }
            sb.append(']');
        } else {
            quote(sb, v.toString());
        }
    }

    private static void quote(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }
}
