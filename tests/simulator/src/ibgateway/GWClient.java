package ibgateway;

import java.awt.BorderLayout;
import java.awt.Component;
import java.awt.EventQueue;
import java.awt.GridBagConstraints;
import java.awt.GridBagLayout;
import java.awt.Insets;
import java.awt.Window;
import java.awt.event.WindowAdapter;
import java.awt.event.WindowEvent;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.List;
import java.util.Properties;
import javax.swing.BorderFactory;
import javax.swing.ButtonGroup;
import javax.swing.JButton;
import javax.swing.JDialog;
import javax.swing.JFrame;
import javax.swing.JLabel;
import javax.swing.JList;
import javax.swing.JMenu;
import javax.swing.JMenuBar;
import javax.swing.JMenuItem;
import javax.swing.JPanel;
import javax.swing.JPasswordField;
import javax.swing.JScrollPane;
import javax.swing.JTextField;
import javax.swing.JToggleButton;
import javax.swing.ListSelectionModel;
import javax.swing.SwingUtilities;
import javax.swing.Timer;
import simcommon.Recorder;
import simcommon.Totp;

/**
 * The gateway simulator: a stand-in for IB Gateway's login frame, dialogs, main window and
 * API port. Main class named like the real one so WM_CLASS and install discovery match.
 * Behaviour is chosen by the scenario file (-Dsim.scenario) and the control channel; what
 * it receives is written to the record file (-Dsim.record). See tests/simulator/README.md.
 */
public final class GWClient {
    final Scenario sc;
    final Recorder rec;
    final LauncherLog log;
    final SimState state;
    final File settingsDir;
    final double tf;
    final long clockOffsetMs;
    final ApiServer api;
    final String restartDir;
    final String title;
    final String mainTitle;
    final Totp totp;
    /** TWS mode (main class jclient.LoginFrame): login frame `Login`, 2FA inside it, separate main frame. */
    final boolean tws;

    JFrame frame;
    /** TWS: the frame is the main window (the login frame was disposed). */
    boolean frameIsMain;
    JLabel status;
    JToggleButton ibApi;
    JToggleButton fix;
    JToggleButton live;
    JToggleButton paper;
    JTextField user;
    JPasswordField pass;
    JButton loginButton;
    JLabel apiStatus;

    /** Incremented whenever a login flow is cancelled, so its pending timers do nothing. */
    int flow;
    boolean inProgress;
    boolean loggedIn;
    String mode = "live";
    String sessionUser = "";
    int attempt;
    int silentDropsLeft;
    int rejectCodesLeft;
    int connectionFailuresLeft;
    int existingSessionLeft;
    boolean handoffPending;
    /** The 2FA window: a JDialog (gateway) or the login frame itself (TWS). */
    Window twofa;
    Timer twofaTimer;
    JDialog progressModal;
    boolean hung;
    /** Expiry of the weekly token this session came from (0: a full login, a new token). */
    long tokenExpiresMs;

    GWClient(boolean tws) throws IOException {
        this.tws = tws;
        String cfg = System.getProperty("jtsConfigDir");
        settingsDir = new File(cfg != null && !cfg.isEmpty() ? cfg : System.getProperty("user.home") + "/Jts");
        if (!settingsDir.isDirectory() && !settingsDir.mkdirs()) {
            throw new IOException("cannot create settings dir " + settingsDir);
        }
        rec = new Recorder(System.getProperty("sim.record"));
        sc = new Scenario(System.getProperty("sim.scenario"));
        log = new LauncherLog(settingsDir);
        state = new SimState(settingsDir);
        tf = sc.dbl("time_factor", 1.0);
        if (!(tf > 0)) {
            throw new IllegalArgumentException(sc.source + ": key 'time_factor' must be > 0");
        }
        clockOffsetMs = (long) (sc.dbl("clock_offset_s", 0) * 1000);
        api = new ApiServer(this, sc);
        restartDir = System.getProperty("restart");
        if (tws) {
            title = sc.oneOf("title", "Login", "Login", "New Login");
            // The account of the mode logged in to comes first; see mainTitle().
            mainTitle = sc.str("main_title", "");
        } else {
            title = sc.oneOf("title", sc.bool("hyphenated_names", false) ? "IBKR-Gateway" : "IBKR Gateway",
                    "IBKR Gateway", "IB Gateway", "Interactive Brokers Gateway", "IBKR-Gateway");
            mainTitle = sc.str("main_title", title);
        }
        totp = new Totp(sc.str("totp_secret", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"));
        silentDropsLeft = sc.integer("silent_drop", 0);
        rejectCodesLeft = sc.integer("reject_codes", 0);
        connectionFailuresLeft = sc.integer("connection_failed", 0);
        String es = sc.oneOf("existing_session", "none", "none", "once", "always");
        existingSessionLeft = es.equals("once") ? 1 : es.equals("always") ? Integer.MAX_VALUE : 0;
        sc.oneOf("existing_session_style", "continue", "continue", "reconnect");
        sc.oneOf("default_mode", "live", "live", "paper");
        look = sc.oneOf("look", "metal", "metal", "nimbus", "flat");
        focusReturn = sc.oneOf("focus_return", "same", "same", "other");
        thiefAfterChars = sc.integer("focus_thief_after_chars", -1);
        loginMessages = sc.oneOf("login_messages", "none", "none", "once", "always");
        postLoginNotice = sc.oneOf("post_login_notice", "none", "none", "nse", "exit_session", "fa_warning");
        hyphenated = sc.bool("hyphenated_names", false);
    }

    /** `Login Messages` after the code: `none`, `once` (Resume login continues), `always`. */
    final String loginMessages;
    /** A notice frame or dialog after login: `nse`, `exit_session`, `fa_warning`. */
    final String postLoginNotice;
    /** 10.37.1q's names: `IBKR-Gateway`, `Live-Trading`, `Paper-Trading`, `Paper-Login`. */
    final boolean hyphenated;

    /** The Swing look (`look`): windows are drawn by Metal, Nimbus or a flat theme. */
    final String look;
    /** After a dialog steals the focus: `same` (Java restores it) or `other` component. */
    final String focusReturn;
    /** Characters of password after which a modeless dialog takes the focus (once). */
    final int thiefAfterChars;
    boolean thiefShown;

    public static void main(String[] args) {
        run(args, false);
    }

    /** Entry point of TWS mode (jclient.LoginFrame). */
    public static void mainTws(String[] args) {
        run(args, true);
    }

    private static void run(String[] args, boolean tws) {
        GWClient app;
        try {
            app = new GWClient(tws);
        } catch (IOException | IllegalArgumentException e) {
            System.err.println("gateway simulator: " + e.getMessage());
            System.exit(2);
            return;
        }
        Ui.app = app;
        app.start(args);
    }

    long nowMs() {
        return System.currentTimeMillis() + clockOffsetMs;
    }

    int scaled(double seconds) {
        return (int) Math.max(0, Math.round(seconds * tf * 1000));
    }

    /** Runs r on the EDT after a scaled delay, unless the current login flow was cancelled. */
    void after(double seconds, Runnable r) {
        final int f = flow;
        Timer t = new Timer(scaled(seconds), e -> {
            if (f == flow && !hung) {
                r.run();
            }
        });
        t.setRepeats(false);
        t.start();
    }

    /** Like after(), but independent of login flows. */
    void always(double seconds, Runnable r) {
        Timer t = new Timer(scaled(seconds), e -> {
            if (!hung) {
                r.run();
            }
        });
        t.setRepeats(false);
        t.start();
    }

    /**
     * Login progress: the gateway shows it as the frame's title; TWS in a status label of the
     * login frame (its title stays), recorded as `status`.
     */
    void progress(String text) {
        if (!tws) {
            Ui.setTitle(frame, text);
            return;
        }
        if (status != null) {
            status.setText(text);
        }
        rec.event("status", "window", frame.getTitle(), "text", text);
    }

    void start(String[] args) {
        long pid = ProcessHandle.current().pid();
        rec.event("start", "pid", pid, "program", tws ? "tws" : "gateway", "restart", restartDir, "settings_dir", settingsDir.getPath(),
                "cwd", new File("").getAbsolutePath(), "jvm_args",
                ManagementFactory.getRuntimeMXBean().getInputArguments());
        log.info((tws ? "Starting Trader Workstation" : "Starting IB Gateway") + " (simulator) pid " + pid);
        log.info("jtsConfigDir: " + settingsDir.getPath());
        if (restartDir != null) {
            log.info("IB GATEWAY RESTART: restart=" + restartDir);
        }
        // While the startup delay runs no window exists and only daemon threads are alive,
        // so AWT's auto-shutdown would end the JVM (exit 0) before the login frame shows.
        // The real gateway shows a splash meanwhile; this thread keeps the JVM alive the
        // same way. Every exit goes through exitApp (System.exit) or a signal.
        Thread keeper = new Thread(() -> {
            try {
                Thread.sleep(Long.MAX_VALUE);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "SimKeepAlive");
        keeper.setDaemon(false);
        keeper.start();
        Control.start(this);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> rec.event("jvm_shutdown"), "SimShutdown"));
        if (!sc.chaos.isEmpty()) {
            rec.event("chaos", "chose", sc.chaos.toString());
        }
        EventQueue.invokeLater(() -> {
            Ui.installLook(look);
            Ui.installInputRecorder();
            always(sc.dbl("startup_delay_s", 3), () -> {
                if (restartDir != null) {
                    restartLogin();
                } else {
                    showLoginFrame();
                }
            });
        });
    }

    // ---------------------------------------------------------------- login frame

    void buildFrame() {
        frame = new JFrame(title);
        frame.setDefaultCloseOperation(JFrame.DO_NOTHING_ON_CLOSE);
        frame.addWindowListener(new WindowAdapter() {
            @Override
            public void windowClosing(WindowEvent e) {
                rec.event("window_close_request", "title", frame.getTitle());
                if (tws && frameIsMain) {
                    // TWS asks first, like File > Exit.
                    confirmExit("window_closed");
                } else {
                    exitApp(0, "window_closed");
                }
            }
        });
        frame.setLocation(100, 100);
    }

    void setLoginPanel() {
        JPanel p = new JPanel(new GridBagLayout());
        p.setBorder(BorderFactory.createEmptyBorder(16, 16, 16, 16));
        GridBagConstraints g = new GridBagConstraints();
        g.insets = new Insets(4, 4, 4, 4);
        g.fill = GridBagConstraints.HORIZONTAL;
        ibApi = new JToggleButton("IB API");
        fix = new JToggleButton(hyphenated ? "FIX-CTCI" : "FIX CTCI");
        live = new JToggleButton(hyphenated ? "Live-Trading" : "Live Trading");
        paper = new JToggleButton(hyphenated ? "Paper-Trading" : "Paper Trading");
        if (sc.bool("mode_toggle_buttongroup", false)) {
            // Swing's ButtonGroup: since Java 9, Tab only reaches the selected toggle of a
            // group (focus is redirected to it), so the other one needs a click.
            ButtonGroup apiGroup = new ButtonGroup();
            apiGroup.add(ibApi);
            apiGroup.add(fix);
            ButtonGroup modeGroup = new ButtonGroup();
            modeGroup.add(live);
            modeGroup.add(paper);
        } else {
            Ui.exclusive(ibApi, fix);
            Ui.exclusive(live, paper);
        }
        ibApi.setSelected(true);
        boolean paperDefault = sc.str("default_mode", "live").equals("paper");
        (paperDefault ? paper : live).setSelected(true);
        user = new JTextField(18);
        user.setName("username");
        user.setText(sc.str("prefill_username", ""));
        pass = new JPasswordField(18);
        pass.setName("password");
        if (thiefAfterChars >= 0) {
            pass.getDocument().addDocumentListener(new javax.swing.event.DocumentListener() {
                public void insertUpdate(javax.swing.event.DocumentEvent e) {
                    if (!thiefShown && pass.getPassword().length >= thiefAfterChars) {
                        thiefShown = true;
                        SwingUtilities.invokeLater(GWClient.this::focusThief);
                    }
                }

                public void removeUpdate(javax.swing.event.DocumentEvent e) {
                }

                public void changedUpdate(javax.swing.event.DocumentEvent e) {
                }
            });
        }
        loginButton = Ui.button(loginLabel(paperDefault), this::onLogIn);
        for (JToggleButton t : new JToggleButton[] {ibApi, fix, live, paper}) {
            t.addItemListener(e -> {
                if (t.isSelected()) {
                    rec.event("toggle", "name", t.getText(), "how", Ui.how());
                }
                loginButton.setText(loginLabel(paper.isSelected()));
            });
        }
        JLabel heading = new JLabel("LOGIN");
        g.gridx = 0;
        g.gridy = 0;
        g.gridwidth = 3;
        p.add(heading, g);
        g.gridwidth = 1;
        g.gridy = 1;
        p.add(new JLabel("API Type"), g);
        g.gridx = 1;
        p.add(ibApi, g);
        g.gridx = 2;
        p.add(fix, g);
        g.gridy = 2;
        g.gridx = 0;
        p.add(new JLabel("Trading Mode"), g);
        g.gridx = 1;
        p.add(live, g);
        g.gridx = 2;
        p.add(paper, g);
        g.gridy = 3;
        g.gridx = 0;
        p.add(new JLabel("Username"), g);
        g.gridx = 1;
        g.gridwidth = 2;
        p.add(user, g);
        g.gridy = 4;
        g.gridx = 0;
        g.gridwidth = 1;
        p.add(new JLabel("Password"), g);
        g.gridx = 1;
        g.gridwidth = 2;
        p.add(pass, g);
        g.gridy = 5;
        g.gridx = 1;
        p.add(loginButton, g);
        status = new JLabel(" ");
        g.gridy = 6;
        g.gridx = 0;
        g.gridwidth = 3;
        p.add(status, g);
        frame.setContentPane(p);
        frame.setJMenuBar(null);
        frame.getRootPane().setDefaultButton(loginButton);
        frame.setFocusTraversalPolicy(new Ui.Order(user, ibApi, fix, live, paper, user, pass, loginButton));
        frame.setSize(540, 360);
        frame.validate();
    }

    String loginLabel(boolean paperMode) {
        if (hyphenated) {
            return paperMode ? "Paper-Login" : "Login";
        }
        return paperMode ? "Paper Log In" : "Log In";
    }

    void setLoginEnabled(boolean on) {
        for (Component c : new Component[] {ibApi, fix, live, paper, user, pass, loginButton}) {
            c.setEnabled(on);
        }
    }

    void showLoginFrame() {
        if (frame != null && frameIsMain) {
            Ui.close(frame);
            frame = null;
            frameIsMain = false;
        }
        if (frame == null) {
            buildFrame();
        }
        setLoginPanel();
        Ui.setTitle(frame, title);
        setLoginEnabled(true);
        int slow = sc.integer("slow_paint_ms", 0);
        if (slow > 0 && !frame.isShowing()) {
            // A slow first paint: the window maps and takes keys while its content is not
            // drawn yet (a plain face covers it).
            JPanel cover = new JPanel();
            cover.setOpaque(true);
            frame.setGlassPane(cover);
            cover.setVisible(true);
            Timer t = new Timer(slow, e -> cover.setVisible(false));
            t.setRepeats(false);
            t.start();
        }
        if (!frame.isShowing()) {
            Ui.show(frame);
        }
        user.requestFocusInWindow();
        inProgress = false;
        log.info("Login frame shown");
    }

    /** Back to the login frame after a failed or cancelled login: password cleared, focus in username. */
    void resetLogin(String why) {
        flow++;
        inProgress = false;
        loggedIn = false;
        closeTwofa();
        Ui.close(progressModal);
        progressModal = null;
        api.stop();
        rec.event("login_reset", "reason", why);
        if (frame == null || frameIsMain || user == null || !(frame.getContentPane().isAncestorOf(user))) {
            showLoginFrame();
        } else {
            Ui.setTitle(frame, title);
            if (status != null) {
                status.setText(" ");
            }
            setLoginEnabled(true);
            pass.setText("");
            user.requestFocusInWindow();
        }
    }

    void onLogIn() {
        if (inProgress || loggedIn) {
            return;
        }
        String u = user.getText();
        String pw = new String(pass.getPassword());
        mode = paper.isSelected() ? "paper" : "live";
        String apiType = fix.isSelected() ? "FIX CTCI" : "IB API";
        attempt++;
        inProgress = true;
        flow++;
        setLoginEnabled(false);
        progress("Authenticating...");
        log.info("Login attempt " + attempt + " (" + mode + ")");
        log.info("AuthTimeoutMonitor-CCP: activate");
        if (silentDropsLeft > 0) {
            silentDropsLeft--;
            rec.event("login_attempt", "username", u, "password", pw, "mode", mode, "api", apiType,
                    "attempt", attempt, "verdict", "dropped");
            after(sc.dbl("ccp_timeout_s", 20), () -> {
                log.warn("AuthTimeoutMonitor-CCP: Timeout!");
                resetLogin("ccp_timeout");
            });
            return;
        }
        after(sc.dbl("auth_delay_s", 1.5), () -> authenticate(u, pw, apiType));
    }

    void authenticate(String u, String pw, String apiType) {
        long now = System.currentTimeMillis();
        if (now < state.lockoutUntilMs) {
            rec.event("login_attempt", "username", u, "password", pw, "mode", mode, "api", apiType,
                    "attempt", attempt, "verdict", "locked_out");
            showLockout();
            return;
        }
        boolean paperMode = mode.equals("paper");
        String wantUser = paperMode ? sc.str("paper_username", sc.str("username", "testuser"))
                : sc.str("username", "testuser");
        String wantPass = paperMode ? sc.str("paper_password", sc.str("password", "")) : sc.str("password", "");
        if (!u.equals(wantUser) || !pw.equals(wantPass)) {
            state.failures++;
            int max = sc.integer("max_failures", 3);
            boolean lock = state.failures >= max;
            if (lock) {
                state.lockoutUntilMs = now + sc.integer("lockout_seconds", 53) * 1000L;
                state.failures = 0;
            }
            state.save();
            rec.event("login_attempt", "username", u, "password", pw, "mode", mode, "api", apiType,
                    "attempt", attempt, "verdict", lock ? "lockout_started" : "bad_credentials");
            log.warn("Authentication failed");
            if (lock) {
                showLockout();
            } else {
                Ui.show(Ui.dialog(frame, "Login failed", new Component[] {Ui.label("Invalid username or password.")},
                        new String[] {"OK"}, 0, null, b -> resetLogin("login_failed")));
            }
            return;
        }
        state.failures = 0;
        state.save();
        sessionUser = u;
        tokenExpiresMs = 0;
        if (sc.bool("passkey_required", false)) {
            rec.event("login_attempt", "username", u, "password", pw, "mode", mode, "api", apiType, "attempt", attempt,
                    "verdict", "passkey_required");
            Ui.show(Ui.dialog(frame, "Gateway",
                    new Component[] {Ui.textArea("Connection to server failed: Required PassKey is not supported, "
                            + "please upgrade to latest version GATEWAY")},
                    new String[] {"OK"}, 0, null, b -> resetLogin("passkey_required")));
            return;
        }
        rec.event("login_attempt", "username", u, "password", pw, "mode", mode, "api", apiType, "attempt", attempt,
                "verdict", "ok");
        log.info("NS_AUTH_START");
        File userDir = new File(settingsDir, encodedUserDir(u));
        if (!userDir.isDirectory() && !userDir.mkdirs()) {
            log.warn("cannot create " + userDir);
        }
        if (existingSessionLeft > 0) {
            existingSessionLeft--;
            showExistingSession();
        } else {
            afterPrimary();
        }
    }

    /**
     * `Login Messages` after the second factor: messages from IBKR, `Resume login` continues.
     * With `always` it comes back every time (a task in the Client Portal is required).
     */
    void showLoginMessages() {
        log.info("Login messages");
        Ui.show(Ui.dialog(frame, "Login Messages",
                new Component[] {Ui.textArea("You have new messages from Interactive Brokers. Review them in "
                        + "the Message Center.")},
                new String[] {"Resume login"}, 0, null, b -> {
                    if (loginMessages.equals("always")) {
                        after(0.5, this::showLoginMessages);
                    } else {
                        connect();
                    }
                }));
    }

    void showLockout() {
        long remaining = Math.max(1, (state.lockoutUntilMs - System.currentTimeMillis() + 999) / 1000);
        String wait;
        if (remaining >= 60) {
            long m = remaining / 60;
            long s = remaining % 60;
            wait = m + (m == 1 ? " minute" : " minutes") + (s > 0 ? " & " + s + " seconds" : "");
        } else {
            wait = remaining + " seconds";
        }
        String text = "Too many failed login attempts. Please wait " + wait + " before attempting to re-login again.";
        rec.event("lockout", "remaining_s", remaining, "until_ms", state.lockoutUntilMs, "text", text);
        Ui.show(Ui.dialog(frame, sc.str("lockout_title", "Gateway"), new Component[] {Ui.textArea(text)},
                new String[] {"OK"}, 0, null, b -> resetLogin("lockout")));
    }

    void showExistingSession() {
        boolean reconnect = sc.str("existing_session_style", "continue").equals("reconnect");
        String go = reconnect ? "Reconnect This Session" : "Continue Login";
        String stop = reconnect ? "Exit Application" : "Cancel";
        log.info("Existing session detected");
        Ui.show(Ui.dialog(frame, "Existing session detected",
                new Component[] {Ui.textArea("You are currently logged in with this username from another location. "
                        + "If you continue, the other session will be disconnected.")},
                new String[] {go, stop}, 0, null, b -> {
                    if (b.equals(go)) {
                        handoffPending = mode.equals("live");
                        afterPrimary();
                    } else if (b.equals("Exit Application")) {
                        exitApp(0, "exit_application");
                    } else {
                        resetLogin("existing_session_cancel");
                    }
                }));
    }

    void afterPrimary() {
        if (mode.equals("live")) {
            startTwofa();
        } else {
            connect();
        }
    }

    // ---------------------------------------------------------------- second factor

    void closeTwofa() {
        if (twofaTimer != null) {
            twofaTimer.stop();
            twofaTimer = null;
        }
        if (twofa != null && twofa != frame) {
            Ui.close(twofa);
        }
        twofa = null;
    }

    /** A new 2FA window (gateway: a JDialog transient for the frame; TWS: the login frame). */
    void openTwofaWindow() {
        if (tws) {
            twofa = frame;
        } else {
            JDialog d = new JDialog(frame, "Second Factor Authentication", java.awt.Dialog.ModalityType.MODELESS);
            d.setDefaultCloseOperation(JDialog.DO_NOTHING_ON_CLOSE);
            d.addWindowListener(new WindowAdapter() {
                @Override
                public void windowClosing(WindowEvent e) {
                    rec.event("window_close_request", "title", d.getTitle());
                    resetLogin("twofa_closed");
                }
            });
            twofa = d;
        }
        final int f = flow;
        twofaTimer = new Timer(scaled(sc.dbl("twofa_timeout_s", 180)), e -> {
            if (f == flow && !hung) {
                log.warn("Second factor authentication timed out");
                rec.event("twofa_timeout");
                resetLogin("twofa_timeout");
            }
        });
        twofaTimer.setRepeats(false);
        twofaTimer.start();
    }

    /** Puts content into the 2FA window; shows it (gateway) or records the morph (TWS). */
    void setTwofaContent(JPanel p, JButton def, Ui.Order order, String what) {
        Window w = twofa;
        if (w == null) {
            return;
        }
        javax.swing.RootPaneContainer rp = (javax.swing.RootPaneContainer) w;
        if (tws) {
            JPanel outer = new JPanel(new BorderLayout(8, 8));
            outer.setBorder(BorderFactory.createEmptyBorder(12, 12, 12, 12));
            outer.add(new JLabel("SECOND FACTOR AUTHENTICATION"), BorderLayout.NORTH);
            outer.add(p, BorderLayout.CENTER);
            p = outer;
        }
        rp.setContentPane(p);
        rp.getRootPane().setDefaultButton(def);
        w.setFocusTraversalPolicy(order);
        if (tws) {
            // The real frame may change its size when its content changes: no new window.
            frame.setSize(480, 320);
            frame.validate();
            frame.repaint();
            rec.event("content", "window", frame.getTitle(), "what", what);
        } else {
            w.pack();
            w.setSize(Math.max(420, w.getWidth()), w.getHeight());
            w.validate();
            if (!w.isShowing()) {
                w.setLocationRelativeTo(frame);
                Ui.show(w);
            }
        }
        Component init = order.getDefaultComponent(w);
        if (init != null) {
            SwingUtilities.invokeLater(init::requestFocusInWindow);
        }
    }

    /**
     * The accounts of the mode logged in to, as IBKR numbers them: live accounts `U…`
     * (`accounts`), paper accounts `DU…` (`paper_accounts`). The API's managedAccounts and
     * TWS's main window title show them.
     */
    List<String> accounts() {
        return mode.equals("paper") ? sc.list("paper_accounts", "DU1234567") : sc.list("accounts", "U1234567");
    }

    /** TWS: `<first account> Interactive Brokers`; the gateway: its frame title. */
    String mainTitle() {
        if (!mainTitle.isEmpty()) {
            return mainTitle;
        }
        List<String> a = accounts();
        return (a.isEmpty() ? "" : a.get(0)) + " Interactive Brokers";
    }

    void startTwofa() {
        List<String> devices = sc.list("devices", "Mobile Authenticator app");
        openTwofaWindow();
        if (devices.size() > 1) {
            JList<String> list = new JList<>(devices.toArray(new String[0]));
            list.setName("devices");
            list.setSelectionMode(ListSelectionModel.SINGLE_SELECTION);
            list.setSelectedIndex(Math.max(0, Math.min(devices.size() - 1, sc.integer("device_preselect", 0))));
            list.addListSelectionListener(e -> {
                if (!e.getValueIsAdjusting()) {
                    rec.event("list_selection", "value", list.getSelectedValue());
                }
            });
            JButton ok = Ui.button("OK", () -> {
                String dev = list.getSelectedValue();
                rec.event("device", "device", dev);
                twofaContent(dev);
            });
            JButton cancel = Ui.button("Cancel", () -> resetLogin("twofa_cancel"));
            cancel.setDefaultCapable(false);
            JPanel p = new JPanel(new BorderLayout(8, 8));
            p.setBorder(BorderFactory.createEmptyBorder(12, 12, 12, 12));
            p.add(Ui.textArea("Select second factor device"), BorderLayout.NORTH);
            p.add(new JScrollPane(list), BorderLayout.CENTER);
            JPanel row = new JPanel();
            row.add(ok);
            row.add(cancel);
            p.add(row, BorderLayout.SOUTH);
            setTwofaContent(p, ok, new Ui.Order(list, list, ok, cancel), "device_chooser");
        } else {
            twofaContent(devices.isEmpty() ? "Mobile Authenticator app" : devices.get(0));
        }
    }

    /** Fills the 2FA window for the chosen device (the same window: its content changes). */
    /** A device label as the server knows it: labels differ in spacing and case by version. */
    static String deviceKey(String label) {
        return label.trim().replaceAll("\\s+", " ").toLowerCase();
    }

    void twofaContent(String device) {
        if (twofa == null) {
            return;
        }
        JPanel p = new JPanel(new BorderLayout(8, 8));
        p.setBorder(BorderFactory.createEmptyBorder(12, 12, 12, 12));
        JPanel row = new JPanel();
        JButton def;
        Ui.Order order;
        if (deviceKey(device).equals("ib key")) {
            log.info("Waiting for IB Key approval");
            p.add(Ui.textArea("A notification has been sent to your IB Key device. Please approve it to "
                    + "complete the login."), BorderLayout.CENTER);
            JButton cancel = Ui.button("Cancel", () -> resetLogin("twofa_cancel"));
            row.add(cancel);
            def = cancel;
            order = new Ui.Order(cancel, cancel);
        } else {
            JTextField code = new JTextField(10);
            code.setName("code");
            int stall = sc.integer("code_key_stall_ms", 0);
            if (stall > 0) {
                // A gateway whose event thread lags (a loaded machine): each key blocks the EDT,
                // so the field is painted one digit at a time, long after X delivered the keys.
                code.addKeyListener(new java.awt.event.KeyAdapter() {
                    @Override
                    public void keyTyped(java.awt.event.KeyEvent e) {
                        try {
                            Thread.sleep(stall);
                        } catch (InterruptedException ignored) {
                            Thread.currentThread().interrupt();
                        }
                    }
                });
            }
            JButton ok = Ui.button("OK", () -> checkCode(code.getText()));
            JButton cancel = Ui.button("Cancel", () -> resetLogin("twofa_cancel"));
            cancel.setDefaultCapable(false);
            p.add(new JLabel("Enter " + device + " code"), BorderLayout.NORTH);
            p.add(code, BorderLayout.CENTER);
            row.add(ok);
            row.add(cancel);
            def = ok;
            order = new Ui.Order(code, code, ok, cancel);
        }
        p.add(row, BorderLayout.SOUTH);
        rec.event("twofa_prompt", "device", device);
        setTwofaContent(p, def, order, "code_entry");
    }

    void checkCode(String text) {
        String c = text.replace(" ", "").trim();
        long now = nowMs() / 1000;
        long t = Totp.step(now);
        Long matched = null;
        int offset = 0;
        for (int d = -1; d <= 1 && matched == null; d++) {
            if (totp.code(t + d).equals(c)) {
                matched = t + d;
                offset = d;
            }
        }
        String verdict;
        if (matched == null) {
            verdict = "rejected";
            for (int d = -10; d <= 10; d++) {
                if (Math.abs(d) > 1 && totp.code(t + d).equals(c)) {
                    verdict = "wrong_time";
                    offset = d;
                    break;
                }
            }
        } else if (state.usedSteps.contains(matched)) {
            verdict = "reused";
        } else if (rejectCodesLeft > 0) {
            rejectCodesLeft--;
            state.usedSteps.add(matched);
            verdict = "forced_reject";
        } else {
            state.usedSteps.add(matched);
            verdict = "accepted";
        }
        state.save();
        rec.event("code", "code", c, "step", matched, "current_step", t, "offset", offset, "verdict", verdict,
                "seconds_left", 30 - (now % 30));
        if (verdict.equals("accepted")) {
            log.info("Second factor authentication accepted");
            closeTwofa();
            if (tws) {
                // The frame's content leaves the code entry: progress in the status label.
                setLoginPanel();
                setLoginEnabled(false);
            }
            if (!loginMessages.equals("none")) {
                showLoginMessages();
                return;
            }
            if (handoffPending) {
                handoffPending = false;
                Ui.show(Ui.dialog(frame, "Trading Login Handoff",
                        new Component[] {Ui.textArea("Another session is connected with trading permissions. "
                                + "Disconnect it to continue with this login.")},
                        new String[] {"Disconnect Other Session", "Cancel"}, 0, null, b -> {
                            if (b.equals("Cancel")) {
                                resetLogin("handoff_cancel");
                            } else {
                                connect();
                            }
                        }));
            } else {
                connect();
            }
        } else {
            log.warn("Second factor authentication failed");
            closeTwofa();
            if (tws) {
                setLoginPanel();
                setLoginEnabled(false);
                progress("Second factor authentication failed");
            }
            // The code entry reappears: a new dialog (gateway) or the frame's content again (TWS).
            after(0.5, () -> {
                List<String> devices = sc.list("devices", "Mobile Authenticator app");
                String dev = devices.contains("Mobile Authenticator app") ? "Mobile Authenticator app"
                        : (devices.isEmpty() ? "Mobile Authenticator app" : devices.get(devices.size() - 1));
                openTwofaWindow();
                twofaContent(dev);
            });
        }
    }

    // ---------------------------------------------------------------- connecting, main window

    void connect() {
        progress("Connecting to server...");
        log.info("Connecting to server");
        if (connectionFailuresLeft > 0) {
            connectionFailuresLeft--;
            after(sc.dbl("connect_delay_s", 2), () -> showConnectionFailed());
            return;
        }
        if (sc.bool("progress_modal", false)) {
            progressModal = Ui.dialog(frame, "Gateway",
                    new Component[] {Ui.label("Attempt 1: connecting to server (trying for another 30 seconds)")},
                    new String[] {"OK"}, 0, null, b -> {
                        progressModal = null;
                        log.info("Login cancelled by user");
                        resetLogin("progress_cancel");
                    });
            Ui.show(progressModal);
        }
        after(sc.dbl("connect_delay_s", 2), () -> {
            Ui.close(progressModal);
            progressModal = null;
            progress("Initializing environment...");
            if (mode.equals("paper")) {
                Ui.show(Ui.dialog(frame, "Warning",
                        new Component[] {Ui.textArea("This is not a brokerage account. This is a paper trading "
                                + "account, for simulated trading only. Market data, orders and positions are "
                                + "simulated.")},
                        new String[] {"I understand and accept"}, 0, null,
                        b -> after(sc.dbl("init_delay_s", 2), this::starting)));
            } else {
                after(sc.dbl("init_delay_s", 2), this::starting);
            }
        });
    }

    void showConnectionFailed() {
        log.warn("Connection to server failed");
        Ui.show(Ui.dialog(frame, "Gateway",
                new Component[] {Ui.label("Connection to server failed: Server disconnected, please try again")},
                new String[] {"OK"}, 0, null, b -> resetLogin("connection_failed")));
    }

    void starting() {
        progress("Starting application...");
        after(sc.dbl("start_delay_s", 1.5), this::loggedInMain);
    }

    void loggedInMain() {
        JPanel p = new JPanel(new BorderLayout(8, 8));
        p.setBorder(BorderFactory.createEmptyBorder(12, 12, 12, 12));
        JPanel top = new JPanel();
        top.add(new JLabel(tws ? "TRADER WORKSTATION" : "IBKR GATEWAY"));
        top.add(new JLabel("API Server"));
        apiStatus = new JLabel("disconnected");
        top.add(apiStatus);
        p.add(top, BorderLayout.NORTH);
        p.add(new JScrollPane(Ui.textArea("Accounts: " + String.join(",", accounts())
                + "\nMode: " + mode)), BorderLayout.CENTER);
        JMenuBar mb = new JMenuBar();
        JMenu file = new JMenu("File");
        if (tws) {
            file.add(new JMenuItem("Lock Application"));
        }
        JMenuItem close = new JMenuItem(tws ? "Exit" : "Close");
        close.addActionListener(e -> {
            if (tws) {
                confirmExit("menu_exit");
            } else {
                exitApp(0, "menu_close");
            }
        });
        file.add(close);
        mb.add(file);
        mb.add(new JMenu("Configure"));
        JMenu help = new JMenu("Help");
        help.add(new JMenuItem(tws ? "About Trader Workstation" : "About " + mainTitle()));
        mb.add(help);
        if (tws && !frameIsMain) {
            // TWS: the login frame goes away and a separate main frame appears.
            Ui.close(frame);
            buildFrame();
            frameIsMain = true;
            frame.setTitle(mainTitle() + (mode.equals("paper") ? " (Simulated Trading)" : ""));
            frame.setContentPane(p);
            frame.setJMenuBar(mb);
            frame.setFocusTraversalPolicy(new Ui.Order(null));
            frame.setSize(1000, 700);
            Ui.show(frame);
        } else {
            frame.setContentPane(p);
            frame.setJMenuBar(mb);
            frame.setFocusTraversalPolicy(new Ui.Order(null));
            frame.setSize(790, 560);
            frame.validate();
            Ui.setTitle(frame, tws ? frame.getTitle() : mainTitle());
        }
        inProgress = false;
        boolean wasLoggedIn = loggedIn;
        loggedIn = true;
        log.info("Login has completed");
        // The port listens before `logged_in` is recorded, so a test may connect right away.
        // A free-trading account gets no API at all.
        if (!sc.bool("free_trading_account", false)) {
            api.start();
        }
        api.setLink(true);
        rec.event("logged_in", "mode", mode, "user", sessionUser, "via",
                restartDir != null && attempt == 0 ? "token" : "credentials");
        apiStatus.setText("connected");
        if (wasLoggedIn) {
            return;
        }
        if (sc.bool("tip_of_the_day", false)) {
            showTip();
        }
        if (sc.bool("free_trading_account", false)) {
            Ui.show(Ui.dialog(frame, "Warning",
                    new Component[] {Ui.textArea("API support is not available for accounts that support free "
                            + "trading.")},
                    new String[] {"OK"}, 0, null, b -> { }));
        }
        switch (postLoginNotice) {
            case "nse":
                showNoticeFrame("NSE Compliance", "Orders in NSE-listed instruments are subject to the "
                        + "exchange's compliance rules.", "OK");
                break;
            case "exit_session":
                showNoticeFrame("Exit Session Setting", "The session will be closed daily at the time set "
                        + "here.", "Close");
                break;
            case "fa_warning":
                Ui.show(Ui.dialog(frame, "Financial Advisor Warning",
                        new Component[] {Ui.textArea("Allocation profiles are not set for this advisor account.")},
                        new String[] {"OK"}, 0, null, b -> { }));
                break;
            default:
                break;
        }
        if (tws && sc.bool("bid_ask_notice", false)) {
            showBidAskNotice();
        }
        if (sc.integer("password_notice_days", -1) >= 0) {
            showPasswordNotice(sc.integer("password_notice_days", -1));
        }
        schedule("relogin_after_s", this::reloginRequired);
        schedule("nightly_restart_after_s", this::nightlyRestart);
        schedule("link_loss_after_s", () -> {
            linkLoss();
            double r = sc.optSeconds("link_restore_after_s");
            if (r >= 0) {
                after(r, () -> api.setLink(true));
            }
        });
        schedule("crash_after_s", this::crash);
        schedule("hang_after_s", this::hang);
    }

    void schedule(String key, Runnable r) {
        double s = sc.optSeconds(key);
        if (s >= 0) {
            after(s, r);
        }
    }

    /**
     * A modeless notice that takes the focus while the password is typed (as real gateways'
     * bulletins do). With `focus_return = other` the focus comes back on `IB API` instead of
     * the password field when it closes.
     */
    void focusThief() {
        rec.event("focus_thief", "after_chars", pass.getPassword().length);
        if (focusReturn.equals("other")) {
            ibApi.requestFocusInWindow();
        }
        Ui.show(Ui.dialog(frame, "Tip of the Day",
                new Component[] {Ui.textArea("Did you know? Market data subscriptions are managed in "
                        + "the Client Portal.")},
                new String[] {"Close"}, 0, null, b -> { }));
    }

    /** A notice JFrame (not a dialog) with one default button that closes it. */
    void showNoticeFrame(String title, String text, String button) {
        JFrame f = new JFrame(title);
        f.setDefaultCloseOperation(JFrame.DO_NOTHING_ON_CLOSE);
        JButton b = Ui.button(button, () -> Ui.close(f));
        JPanel p = new JPanel(new BorderLayout(8, 8));
        p.setBorder(BorderFactory.createEmptyBorder(12, 12, 12, 12));
        p.add(Ui.textArea(text), BorderLayout.CENTER);
        JPanel row = new JPanel();
        row.add(b);
        p.add(row, BorderLayout.SOUTH);
        f.setContentPane(p);
        f.getRootPane().setDefaultButton(b);
        f.setFocusTraversalPolicy(new Ui.Order(b, b));
        f.pack();
        f.setLocation(140, 140);
        Ui.show(f);
    }

    void showTip() {
        Ui.show(Ui.dialog(frame, "Tip of the Day",
                new Component[] {Ui.textArea("Did you know? You can configure the API port under Configure > "
                        + "Settings > API > Settings.")},
                new String[] {"Close"}, 0, null, b -> { }));
    }

    // ---------------------------------------------------------------- TWS-only dialogs

    JDialog exitConfirm;

    /**
     * TWS: File > Exit or closing the main window asks `Are you sure you want to exit?`
     * (`Yes` default, `No`); `Yes` shows `Shutdown progress`, then the JVM exits 0. The real
     * dialog's title is not known (IBC matches its label); the simulator titles it with the
     * question so a title-only supervisor can recognise it.
     */
    void confirmExit(String reason) {
        if (exitConfirm != null && exitConfirm.isShowing()) {
            return;
        }
        exitConfirm = Ui.dialog(frame, "Are you sure you want to exit?",
                new Component[] {Ui.label("Are you sure you want to exit?")}, new String[] {"Yes", "No"}, 0, null,
                b -> {
                    exitConfirm = null;
                    if (b.equals("Yes")) {
                        log.info("Exit confirmed");
                        JDialog progressDlg = Ui.dialog(frame, "Shutdown progress",
                                new Component[] {Ui.label("Saving settings and closing connections...")},
                                new String[0], -1, null, x -> { });
                        Ui.show(progressDlg);
                        always(1.0, () -> exitApp(0, reason));
                    }
                });
        Ui.show(exitConfirm);
    }

    /** TWS: the market-data notice (IBC's BidAskLastSizeDisplayUpdateDialogHandler). */
    void showBidAskNotice() {
        javax.swing.JCheckBox again = new javax.swing.JCheckBox("Don't display this message again.");
        again.setName("dont_display_again");
        Ui.show(Ui.dialog(frame, "Bid, Ask and Last Size Display Update",
                new Component[] {Ui.textArea("Bid, Ask and Last Size Display Update: sizes of US stocks are now "
                        + "shown in shares, not in lots of 100."), again},
                new String[] {"I understand - display market data"}, 0, null, b -> { }));
    }

    /** TWS: an API client asks for write access (`Yes` would grant it). */
    void showApiWriteAccess() {
        Ui.show(Ui.dialog(frame, "API client needs write access action confirmation",
                new Component[] {Ui.textArea("An API client is asking to place or modify orders, but the API is "
                        + "configured read-only. Allow this action?")},
                new String[] {"Yes", "No"}, 0, null, b -> { }));
    }

    void showPasswordNotice(int days) {
        JFrame f = new JFrame("Password Notice");
        f.setDefaultCloseOperation(JFrame.DO_NOTHING_ON_CLOSE);
        String text = days == 0 ? "Your password has expired. Please change it in Client Portal."
                : "Your password will expire in " + days + " days. Please change it in Client Portal.";
        JButton ok = Ui.button("OK", () -> Ui.close(f));
        JPanel p = new JPanel(new BorderLayout(8, 8));
        p.setBorder(BorderFactory.createEmptyBorder(12, 12, 12, 12));
        p.add(Ui.textArea(text), BorderLayout.CENTER);
        JPanel row = new JPanel();
        row.add(ok);
        p.add(row, BorderLayout.SOUTH);
        f.setContentPane(p);
        f.getRootPane().setDefaultButton(ok);
        f.setFocusTraversalPolicy(new Ui.Order(ok, ok));
        f.addWindowListener(new WindowAdapter() {
            @Override
            public void windowClosing(WindowEvent e) {
                Ui.close(f);
            }
        });
        f.pack();
        f.setSize(Math.max(420, f.getWidth()), f.getHeight());
        f.setLocation(150, 150);
        Ui.show(f);
    }

    // ---------------------------------------------------------------- events while logged in

    void reloginRequired() {
        if (!loggedIn) {
            return;
        }
        log.warn("Session disconnected: re-login is required");
        api.setLink(false);
        if (apiStatus != null) {
            apiStatus.setText("disconnected");
        }
        Ui.show(Ui.dialog(frame, "Re-login is required",
                new Component[] {Ui.textArea("Your session has been disconnected because you logged in from "
                        + "another location. Re-login?")},
                new String[] {"Re-login", "Cancel"}, 0, null, b -> {
                    if (b.equals("Re-login") && tws) {
                        // TWS: back to a fresh login frame (username kept), full login.
                        loggedIn = false;
                        showLoginFrame();
                        user.setText(sessionUser);
                        pass.requestFocusInWindow();
                    } else if (b.equals("Re-login")) {
                        flow++;
                        inProgress = true;
                        progress("Authenticating...");
                        log.info("AuthTimeoutMonitor-CCP: activate");
                        after(sc.dbl("auth_delay_s", 1.5), () -> {
                            log.info("NS_AUTH_START");
                            afterPrimary();
                        });
                    }
                }));
    }

    void linkLoss() {
        api.setLink(false);
        if (apiStatus != null) {
            apiStatus.setText("disconnected");
        }
    }

    void linkRestore() {
        api.setLink(true);
        if (apiStatus != null && loggedIn) {
            apiStatus.setText("connected");
        }
    }

    static String encodedUserDir(String username) {
        try {
            byte[] h = MessageDigest.getInstance("SHA-1").digest(username.toLowerCase().getBytes(StandardCharsets.UTF_8));
            StringBuilder sb = new StringBuilder();
            for (byte b : h) {
                sb.append((char) ('a' + ((b >> 4) & 0xf)));
                sb.append((char) ('a' + (b & 0xf)));
            }
            return sb.substring(0, 36);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    void nightlyRestart() {
        if (!loggedIn) {
            return;
        }
        File dir = new File(settingsDir, encodedUserDir(sessionUser));
        File token = new File(dir, "autorestart");
        Properties p = new Properties();
        p.setProperty("user", sessionUser);
        p.setProperty("mode", mode);
        // The token lives from the last full login (weekly re-authentication), not from now.
        long expires = tokenExpiresMs > 0 ? tokenExpiresMs
                : System.currentTimeMillis() + (long) (sc.dbl("token_ttl_s", 7 * 24 * 3600) * tf * 1000);
        p.setProperty("expires_ms", Long.toString(expires));
        if (!dir.isDirectory() && !dir.mkdirs()) {
            log.warn("cannot create " + dir);
        }
        try (FileOutputStream out = new FileOutputStream(token)) {
            p.store(out, null);
        } catch (IOException e) {
            log.warn("cannot write autorestart token: " + e.getMessage());
        }
        rec.event("autorestart_token", "path", token.getPath(), "dir", dir.getName(), "expires_ms", expires);
        log.info("Restart in progress: the application will restart automatically");
        log.info("IB GATEWAY RESTART");
        exitApp(0, "nightly_restart");
    }

    /** Started with -Drestart=<dir>: log in with the autorestart token, without credentials or 2FA. */
    void restartLogin() {
        File token = new File(new File(settingsDir, restartDir), "autorestart");
        Properties p = new Properties();
        boolean present = token.isFile();
        if (present) {
            try (FileInputStream in = new FileInputStream(token)) {
                p.load(in);
            } catch (IOException e) {
                present = false;
            }
        }
        long expires = Long.parseLong(p.getProperty("expires_ms", "0"));
        boolean expired = sc.bool("token_expired", false) || System.currentTimeMillis() > expires;
        if (present && !token.delete()) {
            log.warn("cannot delete " + token);
        }
        rec.event("restart_token", "dir", restartDir, "present", present, "expired", present && expired);
        showLoginFrame();
        if (!present) {
            log.warn("Restart requested but no autorestart token found: authentication required");
            return;
        }
        if (expired) {
            log.warn("Autorestart token expired: authentication required");
            Ui.show(Ui.dialog(frame, "Gateway",
                    new Component[] {Ui.textArea("Your security tokens have expired. Automatic login is no longer "
                            + "possible; please log in again.")},
                    new String[] {"OK"}, 0, null, b -> { }));
            return;
        }
        mode = p.getProperty("mode", "live");
        sessionUser = p.getProperty("user", "");
        tokenExpiresMs = expires;
        user.setText(sessionUser);
        (mode.equals("paper") ? paper : live).setSelected(true);
        setLoginEnabled(false);
        inProgress = true;
        flow++;
        after(0.3, () -> {
            progress("Authenticating...");
            log.info("AuthTimeoutMonitor-CCP: activate");
            after(sc.dbl("auth_delay_s", 1.5), () -> {
                log.info("NS_AUTH_START");
                rec.event("login_attempt", "username", sessionUser, "mode", mode, "attempt", 0, "verdict", "token");
                connect();
            });
        });
    }

    void crash() {
        rec.event("crash");
        log.warn("crashing (simulated JVM fault)");
        try {
            java.lang.reflect.Field f = Class.forName("sun.misc.Unsafe").getDeclaredField("theUnsafe");
            f.setAccessible(true);
            Object unsafe = f.get(null);
            unsafe.getClass().getMethod("putAddress", long.class, long.class).invoke(unsafe, 0L, 0L);
        } catch (ReflectiveOperationException e) {
            System.err.println("sim: crash failed: " + e);
            Runtime.getRuntime().halt(134);
        }
    }

    void hang() {
        rec.event("hang");
        log.warn("hanging (simulated)");
        hung = true;
        api.hang();
        EventQueue.invokeLater(() -> {
            Object o = new Object();
            synchronized (o) {
                while (true) {
                    try {
                        o.wait();
                    } catch (InterruptedException e) {
                        // stays hung
                    }
                }
            }
        });
    }

    void exitApp(int code, String reason) {
        rec.event("exit", "code", code, "reason", reason);
        log.info("Exiting: " + reason);
        api.stop();
        for (Window w : Window.getWindows()) {
            if (w.isShowing()) {
                Ui.close(w);
            }
        }
        System.exit(code);
    }
}
