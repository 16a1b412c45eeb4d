# track.py: mpiexec -n 2 python track.py
# One MLflow run and one W&B run per job, whatever the number of ranks: every rank runs this script, and only
# rank 0 opens the runs and hands the libraries' Keras callbacks to mpilearn.fit.
import mpilearn  # first: it picks the Keras backend before Keras loads
import keras
import numpy as np

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 6)).astype("float32")
y = (x[:, 0] > 0).astype("int64")
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

callbacks = []
if mpilearn.is_root():  # rank 0 alone: one run per job, not one per rank
    import mlflow
    import mlflow.keras
    import wandb
    from wandb.integration.keras import WandbMetricsLogger

    mlflow.set_experiment("mpilearn")  # the store is MLFLOW_TRACKING_URI (default sqlite:///mlflow.db)
    mlflow.start_run(run_name="job")
    wandb.init(project="mpilearn", name="job")  # WANDB_MODE=offline: no account, files under WANDB_DIR
    callbacks += [mlflow.keras.MlflowCallback(), WandbMetricsLogger()]

history = mpilearn.fit(model, (x, y), validation=(x[:64], y[:64]), epochs=3, batch_size=32, callbacks=callbacks)

if mpilearn.is_root():
    mlflow.log_artifact(str(history.run_dir / "history.json"))
    mlflow.end_run()
    wandb.finish()
