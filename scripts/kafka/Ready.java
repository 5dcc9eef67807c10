import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

/** Exits 0 once the broker at args[0] answers a metadata request, 1 otherwise. Extra args: client properties k=v. */
public class Ready {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
        for (int i = 1; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            props.put(kv[0], kv[1]);
        }
        try (Admin admin = Admin.create(props)) {
            int nodes = admin.describeCluster().nodes().get(4, TimeUnit.SECONDS).size();
            System.exit(nodes > 0 ? 0 : 1);
        } catch (Exception e) {
            System.exit(1);
        }
    }
}
