import tensorflow as tf
from keras_featreg.ops import xla
def test_probe():
    seen = []
    @tf.function
    def f(a):
        seen.append(xla.in_xla_context())
        return a
    f(tf.constant(1.0))
    g = tf.compat.v1.get_default_graph()
    print("GLOBAL CTX", g._get_control_flow_context())
    assert seen == [False], seen
