package bridgetest;

import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.text.SimpleDateFormat;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TimeZone;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.auth.AuthenticateCallbackHandler;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerExtensionsValidatorCallback;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerToken;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallback;

/**
 * The tests' stand-in for MSK's IAM check: accepts an OAUTHBEARER token only if it has the
 * shape of an MSK IAM token (base64url of a SigV4-presigned kafka-cluster:Connect URL for the
 * configured region, signed by the configured access key, not expired). It cannot check the
 * signature against IAM or any IAM policy: only real MSK does that. Each accepted token is
 * printed, so a test can count the tokens the broker saw.
 */
public class MskIamLikeValidator implements AuthenticateCallbackHandler {
    private String region;
    private String accessKey;

    @Override
    public void configure(Map<String, ?> configs, String mechanism, List<AppConfigurationEntry> jaas) {
        Map<String, ?> options = jaas.get(0).getOptions();
        region = (String) options.get("region");
        accessKey = (String) options.get("accessKey");
    }

    @Override
    public void close() {}

    private static Map<String, String> query(String raw) {
        Map<String, String> out = new HashMap<>();
        for (String pair : raw.split("&")) {
            int eq = pair.indexOf('=');
            String k = URLDecoder.decode(eq < 0 ? pair : pair.substring(0, eq), StandardCharsets.UTF_8);
            String v = eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
            out.put(k, v);
        }
        return out;
    }

    private static void require(boolean ok, String what) {
        if (!ok) throw new IllegalArgumentException(what);
    }

    @Override
    public void handle(Callback[] callbacks) throws UnsupportedCallbackException {
        for (Callback cb : callbacks) {
            if (cb instanceof OAuthBearerValidatorCallback) {
                OAuthBearerValidatorCallback v = (OAuthBearerValidatorCallback) cb;
                String token = v.tokenValue();
                try {
                    URI url = new URI(new String(Base64.getUrlDecoder().decode(token), StandardCharsets.UTF_8));
                    require(("kafka." + region + ".amazonaws.com").equals(url.getHost()), "host " + url.getHost());
                    Map<String, String> q = query(url.getRawQuery());
                    require("kafka-cluster:Connect".equals(q.get("Action")), "Action");
                    require("AWS4-HMAC-SHA256".equals(q.get("X-Amz-Algorithm")), "algorithm");
                    String cred = q.getOrDefault("X-Amz-Credential", "");
                    require(cred.startsWith(accessKey + "/") && cred.endsWith("/" + region + "/kafka-cluster/aws4_request"),
                            "credential scope " + cred);
                    require(q.getOrDefault("X-Amz-Signature", "").matches("[0-9a-f]{64}"), "signature");
                    SimpleDateFormat f = new SimpleDateFormat("yyyyMMdd'T'HHmmss'Z'");
                    f.setTimeZone(TimeZone.getTimeZone("UTC"));
                    final long start = f.parse(q.get("X-Amz-Date")).getTime();
                    final long expires = start + 1000L * Long.parseLong(q.get("X-Amz-Expires"));
                    require(expires > System.currentTimeMillis(), "expired");
                    final String principal = cred.substring(0, cred.indexOf('/'));
                    v.token(new OAuthBearerToken() {
                        public String value() { return token; }
                        public Set<String> scope() { return Set.of(); }
                        public long lifetimeMs() { return expires; }
                        public String principalName() { return principal; }
                        public Long startTimeMs() { return start; }
                    });
                    System.out.println("msk-iam-like: accepted " + principal + " token " + q.get("X-Amz-Signature")
                            + " signed " + q.get("X-Amz-Date"));
                } catch (Exception e) {
                    System.out.println("msk-iam-like: refused: " + e);
                    v.error("invalid_token", null, null);
                }
            } else if (cb instanceof OAuthBearerExtensionsValidatorCallback) {
                // MSK tokens carry no SASL extensions; nothing to validate.
            } else {
                throw new UnsupportedCallbackException(cb);
            }
        }
    }
}
