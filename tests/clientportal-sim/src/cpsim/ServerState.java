package cpsim;

import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Properties;
import java.util.TreeSet;

/**
 * What IBKR's servers remember across gateway restarts: used TOTP steps, the failed-login
 * counter and the lockout end. Kept in the file named by -Dsim.state (outside the install;
 * no path: in memory only). The supervisor never reads it.
 */
final class ServerState {
    private final Path file;
    final TreeSet<Long> usedSteps = new TreeSet<>();
    int failures;
    long lockoutUntilMs;

    ServerState(String path) {
        this.file = path == null || path.isEmpty() ? null : Path.of(path);
        if (file == null || !Files.isRegularFile(file)) {
            return;
        }
        Properties p = new Properties();
        try (InputStreamReader r = new InputStreamReader(new FileInputStream(file.toFile()), StandardCharsets.UTF_8)) {
            p.load(r);
            for (String s : p.getProperty("used_steps", "").split(",")) {
                if (!s.trim().isEmpty()) {
                    usedSteps.add(Long.parseLong(s.trim()));
                }
            }
            failures = Integer.parseInt(p.getProperty("failures", "0").trim());
            lockoutUntilMs = Long.parseLong(p.getProperty("lockout_until_ms", "0").trim());
        } catch (IOException | NumberFormatException e) {
            System.err.println("sim: ignoring unreadable server state " + file + ": " + e);
        }
    }

    synchronized void save() {
        while (usedSteps.size() > 32) {
            usedSteps.pollFirst();
        }
        if (file == null) {
            return;
        }
        Properties p = new Properties();
        StringBuilder sb = new StringBuilder();
        for (long s : usedSteps) {
            if (sb.length() > 0) {
                sb.append(',');
            }
            sb.append(s);
        }
        p.setProperty("used_steps", sb.toString());
        p.setProperty("failures", String.valueOf(failures));
        p.setProperty("lockout_until_ms", String.valueOf(lockoutUntilMs));
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (OutputStreamWriter w = new OutputStreamWriter(new FileOutputStream(tmp.toFile()), StandardCharsets.UTF_8)) {
            p.store(w, "clientportal simulator: what IBKR's servers remember");
        } catch (IOException e) {
            System.err.println("sim: cannot write server state: " + e);
            return;
        }
        try {
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            System.err.println("sim: cannot write server state: " + e);
        }
    }
}
