package ibgateway;

import java.awt.Component;
import java.awt.EventQueue;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;

/**
 * Test-only control channel: a loopback TCP port written to "<record path>.ctl". One command
 * per line, one reply line ("ok" or "error: ..."). The supervisor never uses it.
 */
final class Control {
    private Control() {
    }

    static void start(GWClient app) {
        String record = System.getProperty("sim.record");
        if (record == null || record.isEmpty()) {
            return;
        }
        try {
            ServerSocket s = new ServerSocket();
            s.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            File ctl = new File(record + ".ctl");
            File tmp = new File(record + ".ctl.tmp");
            Files.write(tmp.toPath(), (s.getLocalPort() + "\n").getBytes(StandardCharsets.US_ASCII));
            Files.move(tmp.toPath(), ctl.toPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            Thread t = new Thread(() -> {
                while (true) {
                    try {
                        Socket c = s.accept();
                        Thread h = new Thread(() -> serve(app, c), "SimControlConn");
                        h.setDaemon(true);
                        h.start();
                    } catch (IOException e) {
                        return;
                    }
                }
            }, "SimControl");
            t.setDaemon(true);
            t.start();
        } catch (IOException e) {
            System.err.println("sim: control channel unavailable: " + e);
        }
    }

    private static void serve(GWClient app, Socket c) {
        try (Socket sock = c;
             BufferedReader in = new BufferedReader(new InputStreamReader(sock.getInputStream(), StandardCharsets.UTF_8))) {
            OutputStream out = sock.getOutputStream();
            String line;
            while ((line = in.readLine()) != null) {
                line = line.trim();
                if (line.isEmpty()) {
                    continue;
                }
                String reply = command(app, line);
                out.write((reply + "\n").getBytes(StandardCharsets.UTF_8));
                out.flush();
                if (line.equals("crash")) {
                    app.crash(); // after the reply, so the test sees "ok" first
                }
            }
        } catch (IOException e) {
            // test went away
        }
    }

    private static String command(GWClient app, String line) {
        String cmd = line;
        String arg = "";
        int sp = line.indexOf(' ');
        if (sp > 0) {
            cmd = line.substring(0, sp);
            arg = line.substring(sp + 1);
        }
        app.rec.event("control", "cmd", cmd, "arg", arg);
        switch (cmd) {
            case "ping":
                return "ok";
            case "crash":
                return "ok"; // crashes in serve(), after the reply
            case "hang":
                app.hang();
                return "ok";
            case "exit":
                EventQueue.invokeLater(() -> app.exitApp(0, "control_exit"));
                return "ok";
            case "relogin_required":
                EventQueue.invokeLater(app::reloginRequired);
                return "ok";
            case "nightly_restart":
                EventQueue.invokeLater(app::nightlyRestart);
                return "ok";
            case "link_loss":
                EventQueue.invokeLater(app::linkLoss);
                return "ok";
            case "link_restore":
                EventQueue.invokeLater(app::linkRestore);
                return "ok";
            case "existing_session":
                EventQueue.invokeLater(() -> app.existingSessionLeft = 1);
                return "ok";
            case "connection_failed":
                EventQueue.invokeLater(() -> app.connectionFailuresLeft++);
                return "ok";
            case "silent_drop":
                EventQueue.invokeLater(() -> app.silentDropsLeft++);
                return "ok";
            case "reject_code":
                EventQueue.invokeLater(() -> app.rejectCodesLeft++);
                return "ok";
            case "token_expired":
                EventQueue.invokeLater(() -> Ui.show(Ui.dialog(app.frame, "Gateway",
                        new Component[] {Ui.textArea("Your security tokens have expired. Please log in again.")},
                        new String[] {"OK"}, 0, null, b -> app.resetLogin("token_expired"))));
                return "ok";
            case "tip":
                EventQueue.invokeLater(app::showTip);
                return "ok";
            case "bid_ask_notice":
                EventQueue.invokeLater(app::showBidAskNotice);
                return "ok";
            case "api_write_access":
                EventQueue.invokeLater(app::showApiWriteAccess);
                return "ok";
            case "password_notice":
                final int days = arg.isEmpty() ? 7 : parse(arg, 7);
                EventQueue.invokeLater(() -> app.showPasswordNotice(days));
                return "ok";
            case "dialog": {
                String[] parts = arg.split("\\|", -1);
                if (parts.length < 3 || parts[0].isEmpty() || parts[2].isEmpty()) {
                    return "error: usage: dialog <title>|<text>|<button>[,<button>...]";
                }
                String[] buttons = parts[2].split(",");
                EventQueue.invokeLater(() -> Ui.show(Ui.dialog(app.frame, parts[0],
                        new Component[] {Ui.textArea(parts[1])}, buttons, 0, null, b -> { })));
                return "ok";
            }
            default:
                return "error: unknown command '" + cmd + "'";
        }
    }

    private static int parse(String s, int def) {
        try {
            return Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            return def;
        }
    }
}
