package cpsim;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.KeyStore;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import simcommon.Recorder;

/**
 * Simulator of IBKR's Client Portal gateway (`clientportal.gw`), started as
 * `bin/run.sh root/conf.yaml`: HTTPS on 127.0.0.1:listenPort with the install's self-signed
 * keystore, the browser login under `/sso/Login`, and `/v1/api/...` for any client on an
 * allowed IP once a browser has logged in. Nothing else is served.
 *
 * <p>Exit codes: 1 (bad or missing conf.yaml, keystore, port in use, `crash_after_s`),
 * 2 (bad scenario), 143 / 137 (SIGTERM / SIGKILL, the JVM's own).
 */
public final class Main {
    static final String ROOT_REDIRECT = "/sso/Login?forwardTo=22&RL=1&ip2loc=on";

    private final Conf conf;
    private final Recorder rec;
    private final Session session;
    private final Login login;
    private final long slowPageMs;
    private static final AtomicBoolean EXIT_RECORDED = new AtomicBoolean();

    private Main(Conf conf, Scenario sc, Recorder rec, ServerState state) {
        this.conf = conf;
        this.rec = rec;
        this.session = new Session(sc, rec);
        this.login = new Login(sc, rec, session, state);
        this.slowPageMs = sc.integer("slow_page_ms", 0);
    }

    public static void main(String[] args) {
        if (args.length < 1) {
            System.err.println("usage: bin/run.sh <config file>");
            System.exit(1);
        }
        Scenario sc;
        Recorder rec;
        try {
            sc = new Scenario(System.getProperty("sim.scenario"));
            rec = new Recorder(System.getProperty("sim.record"));
        } catch (IOException | IllegalArgumentException e) {
            System.err.println("cpsim: " + e.getMessage());
            System.exit(2);
            return;
        }
        Main m;
        HttpsServer server;
        Conf conf;
        long crashMs;
        try {
            conf = Conf.load(Path.of(args[0]));
            m = new Main(conf, sc, rec, new ServerState(System.getProperty("sim.state")));
            crashMs = sc.millisOfSeconds("crash_after_s", -1);
        } catch (IllegalArgumentException e) {
            System.err.println("cpsim: " + e.getMessage());
            System.exit(2);
            return;
        } catch (IOException e) {
            System.err.println("Exception in thread \"main\" java.io.FileNotFoundException: " + args[0]
                    + " (" + e.getMessage() + ")");
            System.exit(1);
            return;
        }
        int port = conf.listenPort();
        try {
            server = HttpsServer.create(new InetSocketAddress("127.0.0.1", port), 64);
            server.setHttpsConfigurator(new HttpsConfigurator(sslContext(conf)));
        } catch (BindException e) {
            System.err.println("SEVERE: Failed to start the gateway: Address already in use: 127.0.0.1:" + port);
            rec.event("exit", "code", 1, "reason", "bind");
            System.exit(1);
            return;
        } catch (Exception e) {
            System.err.println("SEVERE: Failed to start the gateway: " + e);
            rec.event("exit", "code", 1, "reason", "startup");
            System.exit(1);
            return;
        }
        server.createContext("/", m::handle);
        server.setExecutor(Executors.newCachedThreadPool());
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (EXIT_RECORDED.compareAndSet(false, true)) {
                rec.event("exit", "reason", "shutdown");
            }
        }));
        server.start();

        ScheduledExecutorService ticker = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "sim-ticker");
            t.setDaemon(true);
            return t;
        });
        long started = System.currentTimeMillis();
        ticker.scheduleAtFixedRate(() -> {
            try {
                m.session.tick();
                m.login.tick();
                if (crashMs >= 0 && System.currentTimeMillis() - started >= crashMs) {
                    System.err.println("SEVERE: Unexpected exception in the event loop, exiting");
                    EXIT_RECORDED.set(true);
                    rec.event("exit", "code", 1, "reason", "crash_after_s");
                    Runtime.getRuntime().halt(1);
                }
            } catch (Throwable t) {
                System.err.println("sim: ticker: " + t);
            }
        }, 20, 20, TimeUnit.MILLISECONDS);

        String scheme = conf.listenSsl() ? "https" : "http";
        System.out.println("Java Version: " + System.getProperty("java.version"));
        System.out.println("****************************************************");
        System.out.println("version: 7a0b2c1d9e4f3a6b8c5d0e2f1a3b4c5d6e7f8a9b Tue, 5 Dec 2023 14:52:44 -0500");
        System.out.println("****************************************************");
        System.out.println("This is a beta release of the Client Portal Gateway");
        System.out.println("for any issues, please contact api@ibkr.com");
        System.out.println("and include a copy of your logs");
        System.out.println("****************************************************");
        System.out.println("https://www.interactivebrokers.com/api/doc.html");
        System.out.println("****************************************************");
        System.out.println("Open " + scheme + "://localhost:" + port + " to login");
        System.out.flush();
        rec.event("start", "pid", ProcessHandle.current().pid(), "port", port, "allow", conf.allow,
                "deny", conf.deny);
    }

    private static SSLContext sslContext(Conf conf) throws Exception {
        KeyStore ks = KeyStore.getInstance(conf.keystore().toFile(), conf.keystorePassword());
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, conf.keystorePassword());
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), null, null);
        return ctx;
    }

    // ------------------------------------------------------------------ HTTP

    static Map<String, String> parseForm(String s) {
        Map<String, String> m = new LinkedHashMap<>();
        if (s == null || s.isEmpty()) {
            return m;
        }
        for (String pair : s.split("&")) {
            if (pair.isEmpty()) {
                continue;
            }
            int eq = pair.indexOf('=');
            String k = eq < 0 ? pair : pair.substring(0, eq);
            String v = eq < 0 ? "" : pair.substring(eq + 1);
            try {
                m.putIfAbsent(URLDecoder.decode(k, StandardCharsets.UTF_8), URLDecoder.decode(v, StandardCharsets.UTF_8));
            } catch (IllegalArgumentException e) {
                // A malformed escape: ignored, as a form parser would.
            }
        }
        return m;
    }

    private static void send(HttpExchange ex, int status, String type, String body) throws IOException {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", type);
        ex.getResponseHeaders().set("Cache-Control", "no-cache, no-store, must-revalidate");
        ex.getResponseHeaders().set("X-Content-Type-Options", "nosniff");
        boolean head = ex.getRequestMethod().equals("HEAD");
        ex.sendResponseHeaders(status, head || b.length == 0 ? -1 : b.length);
        if (!head && b.length > 0) {
            try (OutputStream os = ex.getResponseBody()) {
                os.write(b);
            }
        }
    }

    private void slow() {
        if (slowPageMs > 0) {
            try {
                Thread.sleep(slowPageMs);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void handle(HttpExchange ex) {
        try {
            String ip = ex.getRemoteAddress().getAddress().getHostAddress();
            String method = ex.getRequestMethod();
            String path = ex.getRequestURI().getPath();
            byte[] bodyBytes;
            try (InputStream in = ex.getRequestBody()) {
                bodyBytes = in.readNBytes(1 << 20);
            }
            if (!conf.allowed(ip)) {
                rec.event("refused", "ip", ip, "method", method, "path", path);
                send(ex, 403, "text/html; charset=utf-8",
                        "<html><head><title>403 Forbidden</title></head><body><h1>Access Denied</h1></body></html>\n");
                return;
            }
            if (path.startsWith("/v1/api/")) {
                Session.Answer a = session.api(method, path);
                rec.event("api", "method", method, "path", path, "status", a.status);
                send(ex, a.status, "application/json; charset=utf-8", a.json);
                return;
            }
            slow();
            if (path.equals("/") && (method.equals("GET") || method.equals("HEAD"))) {
                rec.event("page", "method", method, "path", path, "status", 302, "page", "redirect");
                ex.getResponseHeaders().set("Location", ROOT_REDIRECT);
                send(ex, 302, "text/html; charset=utf-8", "");
                return;
            }
            if (path.equals(Login.PATH) && (method.equals("GET") || method.equals("POST"))) {
                Login.Html h;
                if (method.equals("GET")) {
                    h = login.get(parseForm(ex.getRequestURI().getRawQuery()));
                } else {
                    h = login.post(parseForm(new String(bodyBytes, StandardCharsets.UTF_8)));
                }
                rec.event("page", "method", method, "path", path, "status", h.status, "page", h.page);
                send(ex, h.status, "text/html; charset=utf-8", h.body);
                return;
            }
            rec.event("page", "method", method, "path", path, "status", 404, "page", "not_found");
            send(ex, 404, "text/html; charset=utf-8",
                    "<html><head><title>404 Not Found</title></head><body><h1>Resource not found</h1></body></html>\n");
        } catch (Throwable t) {
            System.err.println("sim: request failed: " + t);
        } finally {
            ex.close();
        }
    }
}
