package ibgateway;

import java.awt.AWTEvent;
import java.awt.BorderLayout;
import java.awt.Component;
import java.awt.Container;
import java.awt.Dialog;
import java.awt.EventQueue;
import java.awt.FlowLayout;
import java.awt.FocusTraversalPolicy;
import java.awt.Frame;
import java.awt.Toolkit;
import java.awt.Window;
import java.awt.event.FocusEvent;
import java.awt.event.InputEvent;
import java.awt.event.KeyEvent;
import java.awt.event.MouseEvent;
import java.awt.event.WindowAdapter;
import java.awt.event.WindowEvent;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import javax.swing.BorderFactory;
import javax.swing.Box;
import javax.swing.BoxLayout;
import javax.swing.JButton;
import javax.swing.JComponent;
import javax.swing.JDialog;
import javax.swing.JFrame;
import javax.swing.JLabel;
import javax.swing.JPanel;
import javax.swing.JPasswordField;
import javax.swing.JTextArea;
import javax.swing.JToggleButton;
import javax.swing.SwingUtilities;
import javax.swing.text.JTextComponent;

/** Window helpers: show/close with records, buttons that record how they were pressed, focus order. */
final class Ui {
    static GWClient app;

    private Ui() {
    }

    static String title(Window w) {
        if (w instanceof Frame) {
            return ((Frame) w).getTitle();
        }
        if (w instanceof Dialog) {
            return ((Dialog) w).getTitle();
        }
        return "";
    }

    static void show(Window w) {
        w.setVisible(true);
        app.rec.event("window_shown", "title", title(w), "kind", w instanceof Dialog ? "dialog" : "frame",
                "width", w.getWidth(), "height", w.getHeight());
    }

    static void close(Window w) {
        if (w == null) {
            return;
        }
        if (w.isDisplayable()) {
            app.rec.event("window_hidden", "title", title(w), "kind", w instanceof Dialog ? "dialog" : "frame");
        }
        w.dispose();
    }

    static void setTitle(JFrame f, String t) {
        String old = f.getTitle();
        if (t.equals(old)) {
            return;
        }
        f.setTitle(t);
        if (f.isShowing()) {
            app.rec.event("title", "title", t, "old", old);
        }
    }

    /** How the current event pressed a button. */
    static String how() {
        AWTEvent e = EventQueue.getCurrentEvent();
        if (e instanceof MouseEvent) {
            return "mouse";
        }
        if (e instanceof KeyEvent) {
            return "keyboard";
        }
        return "program";
    }

    static String fieldName(Component c) {
        if (c == null) {
            return null;
        }
        if (c.getName() != null) {
            return c.getName();
        }
        if (c instanceof javax.swing.AbstractButton) {
            return ((javax.swing.AbstractButton) c).getText();
        }
        return c.getClass().getSimpleName();
    }

    static Map<String, String> fields(Container root) {
        Map<String, String> m = new LinkedHashMap<>();
        collect(root, m);
        return m;
    }

    private static void collect(Container c, Map<String, String> m) {
        for (Component k : c.getComponents()) {
            if (k instanceof JPasswordField && k.getName() != null) {
                m.put(k.getName(), new String(((JPasswordField) k).getPassword()));
            } else if (k instanceof JTextComponent && k.getName() != null && ((JTextComponent) k).isEditable()) {
                m.put(k.getName(), ((JTextComponent) k).getText());
            }
            if (k instanceof Container) {
                collect((Container) k, m);
            }
        }
    }

    /** A button that records every press (window, text, how, and the window's field texts). */
    static JButton button(String text, Runnable action) {
        JButton b = new JButton(text);
        b.addActionListener(e -> {
            Window w = SwingUtilities.getWindowAncestor(b);
            app.rec.event("button", "window", w == null ? "" : title(w), "button", b.getText(), "how", how(),
                    "fields", w == null ? new LinkedHashMap<>() : fields(w));
            action.run();
        });
        return b;
    }

    /** Explicit focus order; the first entry gets the initial focus unless told otherwise. */
    static final class Order extends FocusTraversalPolicy {
        final List<Component> comps;
        final Component initial;

        Order(Component initial, Component... comps) {
            this.comps = new ArrayList<>(Arrays.asList(comps));
            this.initial = initial;
        }

        private boolean ok(Component c) {
            return c.isShowing() && c.isEnabled() && c.isFocusable();
        }

        private Component step(Component from, int dir) {
            int n = comps.size();
            if (n == 0) {
                return null;
            }
            int i = comps.indexOf(from);
            if (i < 0) {
                i = dir > 0 ? -1 : n;
            }
            for (int k = 1; k <= n; k++) {
                Component c = comps.get(Math.floorMod(i + dir * k, n));
                if (ok(c)) {
                    return c;
                }
            }
            return null;
        }

        @Override
        public Component getComponentAfter(Container root, Component c) {
            return step(c, 1);
        }

        @Override
        public Component getComponentBefore(Container root, Component c) {
            return step(c, -1);
        }

        @Override
        public Component getFirstComponent(Container root) {
            return step(null, 1);
        }

        @Override
        public Component getLastComponent(Container root) {
            return step(null, -1);
        }

        @Override
        public Component getDefaultComponent(Container root) {
            return initial != null && ok(initial) ? initial : getFirstComponent(root);
        }
    }

    /**
     * Two mutually exclusive toggles without a ButtonGroup, so Tab reaches both and Space
     * selects the focused one; Space on the selected one keeps it selected.
     */
    static void exclusive(JToggleButton a, JToggleButton b) {
        ExclusiveModel ma = new ExclusiveModel();
        ExclusiveModel mb = new ExclusiveModel();
        ma.partner = mb;
        mb.partner = ma;
        a.setModel(ma);
        b.setModel(mb);
    }

    static final class ExclusiveModel extends JToggleButton.ToggleButtonModel {
        private static final long serialVersionUID = 1L;
        ExclusiveModel partner;

        @Override
        public void setSelected(boolean on) {
            if (!on && isSelected() && !partner.isSelected()) {
                return;
            }
            super.setSelected(on);
            if (on && partner.isSelected()) {
                partner.setSelected(false);
            }
        }
    }

    static JTextArea textArea(String text) {
        JTextArea a = new JTextArea(text);
        a.setEditable(false);
        a.setFocusable(false);
        a.setLineWrap(true);
        a.setWrapStyleWord(true);
        a.setOpaque(false);
        a.setColumns(34);
        a.setName("message");
        return a;
    }

    static JLabel label(String text) {
        return new JLabel(text);
    }

    /**
     * A dialog transient for owner with a message body and a row of buttons. The button at
     * index def is the Swing default button (Enter); the others are not default-capable, so
     * Enter always presses the default and Space presses the focused button. Tab order: the
     * focusable body components, then the buttons left to right. Closing the window counts
     * as pressing the last button. Pressing any button closes the dialog, then calls onButton.
     */
    static JDialog dialog(Window owner, String title, Component[] body, String[] buttons, int def,
            Component initialFocus, Consumer<String> onButton) {
        JDialog d = new JDialog(owner, title, Dialog.ModalityType.MODELESS);
        JPanel content = new JPanel(new BorderLayout(8, 8));
        content.setBorder(BorderFactory.createEmptyBorder(12, 12, 12, 12));
        JPanel center = new JPanel();
        center.setLayout(new BoxLayout(center, BoxLayout.Y_AXIS));
        List<Component> order = new ArrayList<>();
        for (Component c : body) {
            if (c instanceof JComponent) {
                ((JComponent) c).setAlignmentX(Component.LEFT_ALIGNMENT);
            }
            center.add(c);
            center.add(Box.createVerticalStrut(6));
            if (c.isFocusable() && !(c instanceof JLabel) && !(c instanceof JTextArea)) {
                order.add(c);
            }
        }
        content.add(center, BorderLayout.CENTER);
        JPanel row = new JPanel(new FlowLayout(FlowLayout.RIGHT));
        JButton[] bs = new JButton[buttons.length];
        for (int i = 0; i < buttons.length; i++) {
            final String text = buttons[i];
            bs[i] = button(text, () -> {
                close(d);
                onButton.accept(text);
            });
            bs[i].setDefaultCapable(i == def);
            row.add(bs[i]);
            order.add(bs[i]);
        }
        content.add(row, BorderLayout.SOUTH);
        d.setContentPane(content);
        if (def >= 0 && def < bs.length) {
            d.getRootPane().setDefaultButton(bs[def]);
        }
        Component init = initialFocus != null ? initialFocus : (def >= 0 && def < bs.length ? bs[def] : null);
        d.setFocusTraversalPolicy(new Order(init, order.toArray(new Component[0])));
        d.setDefaultCloseOperation(JDialog.DO_NOTHING_ON_CLOSE);
        if (bs.length > 0) {
            final JButton last = bs[bs.length - 1];
            d.addWindowListener(new WindowAdapter() {
                @Override
                public void windowClosing(WindowEvent e) {
                    app.rec.event("window_close_request", "title", title);
                    last.doClick(0);
                }
            });
        }
        d.pack();
        d.setSize(Math.max(d.getWidth(), 420), d.getHeight());
        d.setLocationRelativeTo(owner);
        return d;
    }

    /** Records keys, focus changes and window activations of the whole application. */
    /**
     * The look and feel: `metal` (Swing's default), `nimbus`, or `flat` (Metal with flat,
     * light fields and buttons and a thin focus ring, as recent gateways draw their login).
     */
    static void installLook(String look) {
        try {
            if (look.equals("nimbus")) {
                javax.swing.UIManager.setLookAndFeel("javax.swing.plaf.nimbus.NimbusLookAndFeel");
            } else if (look.equals("flat")) {
                java.awt.Color line = new java.awt.Color(0xc4, 0xc8, 0xcc);
                java.awt.Color face = new java.awt.Color(0xf4, 0xf5, 0xf7);
                javax.swing.border.Border field = BorderFactory.createCompoundBorder(
                        BorderFactory.createLineBorder(line, 1), BorderFactory.createEmptyBorder(3, 6, 3, 6));
                javax.swing.UIManager.put("TextField.border", field);
                javax.swing.UIManager.put("PasswordField.border", field);
                javax.swing.UIManager.put("Button.background", face);
                javax.swing.UIManager.put("Button.gradient", null);
                javax.swing.UIManager.put("ToggleButton.gradient", null);
                javax.swing.UIManager.put("Button.border", BorderFactory.createCompoundBorder(
                        BorderFactory.createLineBorder(line, 1), BorderFactory.createEmptyBorder(4, 12, 4, 12)));
                javax.swing.UIManager.put("ToggleButton.border", BorderFactory.createCompoundBorder(
                        BorderFactory.createLineBorder(line, 1), BorderFactory.createEmptyBorder(4, 12, 4, 12)));
                javax.swing.UIManager.put("ToggleButton.select", new java.awt.Color(0xcf, 0xe0, 0xf5));
                javax.swing.UIManager.put("Panel.background", java.awt.Color.WHITE);
                javax.swing.UIManager.put("OptionPane.background", java.awt.Color.WHITE);
            }
        } catch (Exception e) {
            throw new IllegalStateException("look " + look + ": " + e);
        }
        app.rec.event("look", "name", look);
    }

    static void installInputRecorder() {
        Toolkit.getDefaultToolkit().addAWTEventListener(ev -> {
            if (ev instanceof KeyEvent) {
                KeyEvent k = (KeyEvent) ev;
                Component c = k.getComponent();
                Window w = c instanceof Window ? (Window) c : SwingUtilities.getWindowAncestor(c);
                String wt = w == null ? "" : title(w);
                char ch = k.getKeyChar();
                boolean printable = ch != KeyEvent.CHAR_UNDEFINED && ch >= 0x20 && ch != 0x7f;
                if (k.getID() == KeyEvent.KEY_TYPED && printable) {
                    app.rec.event("key", "window", wt, "field", fieldName(c), "char", String.valueOf(ch));
                } else if (k.getID() == KeyEvent.KEY_PRESSED && !printable) {
                    int code = k.getKeyCode();
                    if (code == KeyEvent.VK_SHIFT || code == KeyEvent.VK_CONTROL || code == KeyEvent.VK_ALT
                            || code == KeyEvent.VK_META) {
                        return;
                    }
                    String mods = InputEvent.getModifiersExText(k.getModifiersEx());
                    app.rec.event("key", "window", wt, "field", fieldName(c), "key", KeyEvent.getKeyText(code),
                            "mods", mods);
                }
            } else if (ev instanceof FocusEvent && ev.getID() == FocusEvent.FOCUS_GAINED) {
                Component c = ((FocusEvent) ev).getComponent();
                if (c instanceof Window) {
                    return;
                }
                Window w = SwingUtilities.getWindowAncestor(c);
                app.rec.event("focus", "window", w == null ? "" : title(w), "field", fieldName(c));
            } else if (ev instanceof WindowEvent && ev.getID() == WindowEvent.WINDOW_ACTIVATED) {
                app.rec.event("window_active", "title", title(((WindowEvent) ev).getWindow()));
            }
        }, AWTEvent.KEY_EVENT_MASK | AWTEvent.FOCUS_EVENT_MASK | AWTEvent.WINDOW_EVENT_MASK);
    }
}
