package ibgateway;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.text.SimpleDateFormat;
import java.util.Date;

/** launcher.log in the settings dir, in the real gateway's line format. */
final class LauncherLog {
    private final FileOutputStream out;
    private final SimpleDateFormat fmt = new SimpleDateFormat("yyyy-MM-dd HH:mm:ss.SSS");

    LauncherLog(File settingsDir) {
        FileOutputStream o = null;
        try {
            o = new FileOutputStream(new File(settingsDir, "launcher.log"), true);
        } catch (IOException e) {
            System.err.println("sim: cannot open launcher.log: " + e);
        }
        out = o;
    }

    synchronized void info(String msg) {
        line("INFO ", msg);
    }

    synchronized void warn(String msg) {
        line("WARN ", msg);
    }

    private void line(String level, String msg) {
        String thread = Thread.currentThread().getName();
        String s = fmt.format(new Date()) + " [" + shortThread(thread) + "] " + level + " [JTS-" + thread
                + "] - " + msg + "\n";
        System.out.print(s);
        if (out == null) {
            return;
        }
        try {
            out.write(s.getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            System.err.println("sim: cannot write launcher.log: " + e);
        }
    }

    private static String shortThread(String name) {
        int h = Math.abs(name.hashCode());
        return "" + (char) ('A' + h % 26) + (char) ('A' + (h / 26) % 26);
    }
}
