package ibgateway;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.Properties;
import java.util.TreeSet;

/**
 * What IBKR's servers remember between gateway runs, kept in the settings dir so that it
 * survives restarts and crashes: the failed-login counter, the lockout end, and the TOTP
 * steps already used. (Stands in for server-side state; the real gateway has no such file.)
 */
final class SimState {
    private final File file;
    int failures;
    long lockoutUntilMs;
    final TreeSet<Long> usedSteps = new TreeSet<>();

    SimState(File settingsDir) {
        file = new File(settingsDir, "sim-server-state.properties");
        if (file.exists()) {
            Properties p = new Properties();
            try (FileInputStream in = new FileInputStream(file)) {
                p.load(in);
                failures = Integer.parseInt(p.getProperty("failures", "0"));
                lockoutUntilMs = Long.parseLong(p.getProperty("lockout_until_ms", "0"));
                for (String s : p.getProperty("used_steps", "").split(",")) {
                    if (!s.isEmpty()) {
                        usedSteps.add(Long.parseLong(s));
                    }
                }
            } catch (IOException | NumberFormatException e) {
                System.err.println("sim: ignoring unreadable " + file + ": " + e);
            }
        }
    }

    synchronized void save() {
        Properties p = new Properties();
        p.setProperty("failures", Integer.toString(failures));
        p.setProperty("lockout_until_ms", Long.toString(lockoutUntilMs));
        while (usedSteps.size() > 64) {
            usedSteps.pollFirst();
        }
        StringBuilder sb = new StringBuilder();
        for (Long s : usedSteps) {
            if (sb.length() > 0) {
                sb.append(',');
            }
            sb.append(s);
        }
        p.setProperty("used_steps", sb.toString());
        File tmp = new File(file.getPath() + ".tmp");
        try (FileOutputStream out = new FileOutputStream(tmp)) {
            p.store(out, "gateway simulator: server-side state");
            out.getFD().sync();
            Files.move(tmp.toPath(), file.toPath(), StandardCopyOption.REPLACE_EXISTING,
                    StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            System.err.println("sim: cannot save " + file + ": " + e);
        }
    }
}
