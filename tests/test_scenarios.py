"""A market that leaves its training range (the simulator's `boom` scenario: the test period trades at least 3x
above every training week): with the default premium target every learned model beats a constant, and HANCross
beats the naive repeat-sales baseline. Trained briefly on the tiny scale, as a user's defaults would."""
import numpy as np
import pytest
from hancross.core import TrainConfig, DataConfig
from hancross.data.synthetic import generate_market, scenario_config
from hancross.models.registry import list_models, default_config, Config
from hancross.train.fit import fit

EPOCHS = 3

@pytest.fixture(scope='module')
def boom(tmp_path_factory):
    return generate_market(tmp_path_factory.mktemp('boom')/'boom', scale='tiny', seed=0, cfg=scenario_config('boom'))

@pytest.fixture(scope='module')
def results(boom, tmp_path_factory):
    out, res = tmp_path_factory.mktemp('runs'), {}
    for m in list_models():
        cfg = Config(model=default_config(m), training=TrainConfig(num_epochs=EPOCHS, seed=0, batch_size=32), data=DataConfig(data_dir=str(boom)))
        res[m] = fit(cfg, experiment=m, out_dir=out, quiet=True)
    return res

def constant_r2(boom) -> float:
    "Test R2 of the train split's mean log price"
    from hancross.data.dataset import MarketData
    md = MarketData(boom); y = md.df.target.to_numpy()
    tr, te = y[md.split_idx['train']], y[md.split_idx['test']]
    return float(1 - ((te - tr.mean()) ** 2).mean() / te.var())

def test_every_model_beats_a_constant_out_of_range(boom, results):
    c = constant_r2(boom)
    print(f"constant {c:.2f}; " + ', '.join(f"{m} {r['test']['r2']:.2f}" for m, r in results.items()))
    assert c < -1                                              # the boom: a constant at the training level is far off
    for m, r in results.items(): assert r['test']['r2'] > c + 1, f"{m}: test R2 {r['test']['r2']:.2f} vs constant {c:.2f}"

def test_hancross_beats_naive_out_of_range(results):
    assert results['hancross']['test']['rmse'] < results['naive']['test']['rmse'], \
        f"hancross rmse {results['hancross']['test']['rmse']:.3f} vs naive {results['naive']['test']['rmse']:.3f}"

def test_absolute_targets_do_not_survive_the_boom(boom, results, tmp_path):
    "The contrast that makes the tests above mean something: the same model on absolute targets falls far behind"
    cfg = Config(model=default_config('concat'), training=TrainConfig(num_epochs=EPOCHS, seed=0, batch_size=32),
                 data=DataConfig(data_dir=str(boom), target='absolute'))
    r = fit(cfg, experiment='concat_absolute', out_dir=tmp_path, quiet=True)
    print(f"concat test R2: absolute {r['test']['r2']:.2f}, premium {results['concat']['test']['r2']:.2f}")
    assert r['test']['r2'] < results['concat']['test']['r2'] - 0.5
