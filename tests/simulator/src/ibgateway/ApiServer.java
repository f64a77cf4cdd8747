package ibgateway;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The TWS API server side (text protocol, server versions up to 200), loopback only.
 * The TWS API wire protocol. Listens only while logged in.
 */
final class ApiServer {
    private final GWClient app;
    /** The scenario's `api_port`, or -1: the program's default, chosen at listen time. */
    private final int configuredPort;
    private int port;
    private final int serverVersion;
    private ServerSocket server;
    private final List<Conn> conns = new ArrayList<>();
    private volatile boolean linkUp = true;
    private volatile boolean hung;
    private final boolean hangHandshake;
    private int nextOrderId;

    ApiServer(GWClient app, Scenario sc) {
        this.app = app;
        this.configuredPort = sc.integer("api_port", -1);
        this.port = configuredPort;
        this.serverVersion = Math.min(200, sc.integer("server_version", 176));
        this.hangHandshake = sc.bool("api_hang_handshake", false);
        this.nextOrderId = sc.integer("order_id", 1);
    }

    synchronized void start() {
        if (server != null) {
            return;
        }
        // Defaults as shipped: Gateway 4001 (the simulator does not split live/paper), TWS
        // 7496 live / 7497 paper. Tests always set a free port.
        port = configuredPort >= 0 ? configuredPort : app.tws ? (app.mode.equals("paper") ? 7497 : 7496) : 4001;
        try {
            ServerSocket s = new ServerSocket();
            s.setReuseAddress(true);
            s.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 50);
            server = s;
        } catch (IOException e) {
            app.log.warn("API server could not listen on port " + port + ": " + e.getMessage());
            app.rec.event("api_listen_failed", "port", port, "error", e.getMessage());
            return;
        }
        app.log.info("API server listening on port " + port);
        app.rec.event("api_listen", "port", port);
        final ServerSocket s = server;
        Thread t = new Thread(() -> acceptLoop(s), "ApiAcceptor");
        t.setDaemon(true);
        t.start();
    }

    synchronized void stop() {
        if (server == null) {
            return;
        }
        try {
            server.close();
        } catch (IOException e) {
            // closing anyway
        }
        server = null;
        for (Conn c : new ArrayList<>(conns)) {
            c.close();
        }
        app.rec.event("api_stopped", "port", port);
    }

    void hang() {
        hung = true;
    }

    void setLink(boolean up) {
        if (linkUp == up) {
            return;
        }
        linkUp = up;
        List<Conn> cs;
        synchronized (this) {
            cs = new ArrayList<>(conns);
        }
        for (Conn c : cs) {
            if (c.started) {
                if (up) {
                    c.error(-1, 1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.");
                } else {
                    c.error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.");
                }
            }
        }
        app.rec.event(up ? "link_restored" : "link_lost", "connections", cs.size());
    }

    private void acceptLoop(ServerSocket s) {
        while (!s.isClosed()) {
            try {
                Socket sock = s.accept();
                Conn c = new Conn(sock);
                synchronized (this) {
                    conns.add(c);
                }
                Thread t = new Thread(c::run, "ApiConn-" + sock.getPort());
                t.setDaemon(true);
                t.start();
            } catch (IOException e) {
                return;
            }
        }
    }

    private synchronized boolean clientIdInUse(int id, Conn self) {
        for (Conn c : conns) {
            if (c != self && c.started && c.clientId == id) {
                return true;
            }
        }
        return false;
    }

    private synchronized int takeOrderId() {
        return nextOrderId;
    }

    private static void blockForever() {
        Object o = new Object();
        synchronized (o) {
            while (true) {
                try {
                    o.wait();
                } catch (InterruptedException e) {
                    // a hung gateway stays hung
                }
            }
        }
    }

    final class Conn {
        final Socket sock;
        OutputStream out;
        int version;
        boolean started;
        int clientId = -1;

        Conn(Socket sock) {
            this.sock = sock;
        }

        void run() {
            int remote = sock.getPort();
            app.rec.event("api_connect", "remote_port", remote);
            try {
                DataInputStream in = new DataInputStream(sock.getInputStream());
                out = sock.getOutputStream();
                byte[] prefix = new byte[4];
                in.readFully(prefix);
                if (!(prefix[0] == 'A' && prefix[1] == 'P' && prefix[2] == 'I' && prefix[3] == 0)) {
                    app.rec.event("api_bad_prefix", "remote_port", remote);
                    return;
                }
                String req = new String(frame(in), StandardCharsets.US_ASCII);
                Matcher m = Pattern.compile("^v(\\d+)(?:\\.\\.(\\d+))?").matcher(req);
                if (!m.find()) {
                    app.rec.event("api_bad_version", "request", req);
                    return;
                }
                int min = Integer.parseInt(m.group(1));
                int max = m.group(2) == null ? min : Integer.parseInt(m.group(2));
                if (hung || hangHandshake) {
                    app.rec.event("api_handshake_ignored", "request", req);
                    blockForever();
                }
                version = Math.min(max, serverVersion);
                if (version < min) {
                    app.rec.event("api_version_mismatch", "request", req, "server_version", serverVersion);
                    return;
                }
                SimpleDateFormat f = new SimpleDateFormat("yyyyMMdd HH:mm:ss z");
                send(Integer.toString(version), f.format(new Date(app.nowMs())));
                app.rec.event("api_handshake", "request", req, "server_version", version);
                while (true) {
                    String[] fields = new String(frame(in), StandardCharsets.UTF_8).split("\0", -1);
                    if (hung) {
                        blockForever();
                    }
                    handle(fields);
                }
            } catch (IOException e) {
                // client went away
            } finally {
                close();
                app.rec.event("api_disconnect", "remote_port", remote, "client_id", clientId);
            }
        }

        private byte[] frame(DataInputStream in) throws IOException {
            int len = in.readInt();
            if (len < 0 || len > 16 * 1024 * 1024) {
                throw new IOException("bad frame length " + len);
            }
            byte[] b = new byte[len];
            in.readFully(b);
            return b;
        }

        private void handle(String[] f) throws IOException {
            int id;
            try {
                id = Integer.parseInt(f[0]);
            } catch (NumberFormatException e) {
                app.rec.event("api_bad_message", "field0", f[0]);
                return;
            }
            app.rec.event("api_request", "msg", id, "client_id", clientId);
            List<String> accounts = app.accounts();
            String firstAccount = accounts.isEmpty() ? "" : accounts.get(0);
            switch (id) {
                case 71: { // START_API
                    int cid = f.length > 2 ? parseInt(f[2]) : 0;
                    if (clientIdInUse(cid, this)) {
                        error(-1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id.");
                        app.rec.event("api_duplicate_client_id", "client_id", cid);
                        close();
                        return;
                    }
                    clientId = cid;
                    started = true;
                    app.rec.event("api_start", "client_id", cid);
                    send("15", "1", String.join(",", accounts));
                    send("9", "1", Integer.toString(takeOrderId()));
                    if (linkUp) {
                        error(-1, 2104, "Market data farm connection is OK:usfarm");
                        error(-1, 2106, "HMDS data farm connection is OK:ushmds");
                        error(-1, 2158, "Sec-def data farm connection is OK:secdefnj");
                    } else {
                        error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.");
                    }
                    break;
                }
                case 49: send("49", "1", Long.toString(app.nowMs() / 1000)); break;
                case 8: send("9", "1", Integer.toString(takeOrderId())); break;
                case 17: send("15", "1", String.join(",", accounts)); break;
                case 61: send("62", "1"); break;
                case 5: case 16: send("53", "1"); break;
                case 99: send("102"); break;
                case 6: send("54", "1", f.length > 3 && !f[3].isEmpty() ? f[3] : firstAccount); break;
                case 76: send("74", "1", f.length > 2 ? f[2] : "0"); break;
                case 7: send("55", "1", f.length > 2 ? f[2] : "0"); break;
                default: break; // real gateways ignore what they do not answer here
            }
        }

        private int parseInt(String s) {
            try {
                return Integer.parseInt(s.trim());
            } catch (NumberFormatException e) {
                return 0;
            }
        }

        void error(int reqId, int code, String msg) {
            try {
                if (version < 166) {
                    send("4", "2", Integer.toString(reqId), Integer.toString(code), msg);
                } else if (version < 194) {
                    send("4", "2", Integer.toString(reqId), Integer.toString(code), msg, "");
                } else {
                    send("4", Integer.toString(reqId), Integer.toString(code), msg, "",
                            Long.toString(app.nowMs()));
                }
            } catch (IOException e) {
                close();
            }
        }

        synchronized void send(String... fields) throws IOException {
            StringBuilder sb = new StringBuilder();
            for (String s : fields) {
                sb.append(s).append('\0');
            }
            byte[] payload = sb.toString().getBytes(StandardCharsets.UTF_8);
            byte[] msg = new byte[4 + payload.length];
            int n = payload.length;
            msg[0] = (byte) (n >>> 24);
            msg[1] = (byte) (n >>> 16);
            msg[2] = (byte) (n >>> 8);
            msg[3] = (byte) n;
            System.arraycopy(payload, 0, msg, 4, n);
            out.write(msg);
            out.flush();
        }

        void close() {
            synchronized (ApiServer.this) {
                conns.remove(this);
            }
            try {
                sock.close();
            } catch (IOException e) {
                // already closed
            }
        }
    }
}
