package jclient;

/**
 * TWS mode of the simulator: started like Trader Workstation (main class jclient.LoginFrame,
 * tws.vmoptions). Login frame titled `Login`, second factor inside that frame, then a separate
 * main frame `<account> Interactive Brokers [(Simulated Trading)]`.
 */
public final class LoginFrame {
    private LoginFrame() {
    }

    public static void main(String[] args) {
        ibgateway.GWClient.mainTws(args);
    }
}
